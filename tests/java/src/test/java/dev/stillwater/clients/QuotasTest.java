package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterClientQuotasOptions;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.errors.InvalidRequestException;
import org.apache.kafka.common.errors.ThrottlingQuotaExceededException;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.quota.ClientQuotaFilterComponent;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Client quotas with the Java client: the Admin client's quota calls (set, described, removed,
 * validate-only, bad input refused), a producer held near its byte-rate quota beside one that
 * keeps its pace, a consumer held near its byte-rate quota, and topic creation held by the
 * mutation quota. Data volume: about 30 MB produced under a 1 MiB/s quota and 90 MB
 * unthrottled; 25 MB written and 20 MB read under a 1 MiB/s consumer quota; 10 partitions.
 */
@ExtendWith(Harness.class)
class QuotasTest {
    @RegisterExtension
    static final Brokers brokers = Brokers.one();

    static final double MiB = 1024 * 1024;

    static ClientQuotaEntity entity(String type, String name) {
        java.util.HashMap<String, String> parts = new java.util.HashMap<>();
        parts.put(type, name);
        return new ClientQuotaEntity(parts);
    }

    static void alter(Admin admin, ClientQuotaEntity entity, String key, Double value) throws Exception {
        admin.alterClientQuotas(List.of(new ClientQuotaAlteration(entity,
                List.of(new ClientQuotaAlteration.Op(key, value))))).all().get();
    }

    @Test
    void quotasAreSetDescribedRemovedAndBadOnesRefused() throws Exception {
        try (Admin admin = Clients.admin(brokers.broker.bootstrap())) {
            ClientQuotaEntity alice = entity(ClientQuotaEntity.USER, "alice-java");
            ClientQuotaEntity defaults = entity(ClientQuotaEntity.CLIENT_ID, null);
            alter(admin, alice, "producer_byte_rate", 2 * MiB);
            alter(admin, defaults, "request_percentage", 25.0);
            var onlyAlice = ClientQuotaFilter.containsOnly(List.of(
                    ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.USER, "alice-java")));
            assertEquals(Map.of(alice, Map.of("producer_byte_rate", 2 * MiB)),
                    admin.describeClientQuotas(onlyAlice).entities().get());
            var defaultClients = ClientQuotaFilter.contains(List.of(
                    ClientQuotaFilterComponent.ofDefaultEntity(ClientQuotaEntity.CLIENT_ID)));
            assertEquals(Map.of(defaults, Map.of("request_percentage", 25.0)),
                    admin.describeClientQuotas(defaultClients).entities().get());

            // Validate-only changes nothing; a removal removes the entity with its last key.
            admin.alterClientQuotas(List.of(new ClientQuotaAlteration(alice,
                    List.of(new ClientQuotaAlteration.Op("producer_byte_rate", null)))),
                    new AlterClientQuotasOptions().validateOnly(true)).all().get();
            assertEquals(1, admin.describeClientQuotas(onlyAlice).entities().get().size());
            alter(admin, alice, "producer_byte_rate", null);
            assertEquals(Map.of(), admin.describeClientQuotas(onlyAlice).entities().get());

            // Bad input: Kafka's InvalidRequestException, nothing changed.
            for (var bad : List.of(
                    new ClientQuotaAlteration(alice, List.of(new ClientQuotaAlteration.Op("no_such_quota", 5.0))),
                    new ClientQuotaAlteration(alice, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", -5.0))),
                    new ClientQuotaAlteration(alice, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 1.5))),
                    new ClientQuotaAlteration(entity("tenant", "x"),
                            List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 5.0))))) {
                var e = assertThrows(ExecutionException.class,
                        () -> admin.alterClientQuotas(List.of(bad)).all().get());
                assertInstanceOf(InvalidRequestException.class, e.getCause(), bad.toString());
            }
            assertEquals(Map.of(), admin.describeClientQuotas(onlyAlice).entities().get());
            alter(admin, defaults, "request_percentage", null);
        }
    }

    /** Produce 10 kB records for {@code seconds}, at {@code pace} bytes a second if given:
     *  the bytes acknowledged by then, and the producer's largest throttle time. */
    static double[] produceFor(String clientId, String topic, int seconds, Double pace) throws Exception {
        AtomicLong acked = new AtomicLong();
        byte[] value = new byte[10_000];
        double throttle;
        long atDeadline;
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(brokers.broker.bootstrap(), Map.of(
                ProducerConfig.CLIENT_ID_CONFIG, clientId, ProducerConfig.LINGER_MS_CONFIG, 5,
                ProducerConfig.BUFFER_MEMORY_CONFIG, 2 * 1024 * 1024))) {
            long start = System.nanoTime();
            long sent = 0;
            while (true) {
                double elapsed = (System.nanoTime() - start) / 1e9;
                if (elapsed >= seconds) {
                    break;
                }
                if (pace != null && sent >= pace * elapsed) {
                    Thread.sleep(2);
                    continue;
                }
                p.send(new ProducerRecord<>(topic, value), (md, e) -> {
                    if (e == null) {
                        acked.addAndGet(value.length);
                    }
                });
                sent += value.length;
            }
            atDeadline = acked.get();
            p.flush();
            throttle = 0;
            for (Map.Entry<?, ? extends Metric> m : p.metrics().entrySet()) {
                var name = ((org.apache.kafka.common.MetricName) m.getKey());
                if (name.name().equals("produce-throttle-time-max")) {
                    Object v = m.getValue().metricValue();
                    if (v instanceof Double d && !d.isNaN()) {
                        throttle = Math.max(throttle, d);
                    }
                }
            }
        }
        return new double[] {atDeadline, throttle};
    }

    @Test
    void aProducerOverItsQuotaIsHeldNearItWhileAnotherKeepsItsPace() throws Exception {
        try (Admin admin = Clients.admin(brokers.broker.bootstrap())) {
            Clients.createTopic(admin, "java-quota-slow", 1, 1, Map.of());
            Clients.createTopic(admin, "java-quota-fast", 1, 1, Map.of());
            alter(admin, entity(ClientQuotaEntity.CLIENT_ID, "java-slow"), "producer_byte_rate", MiB);
        }
        int seconds = 30;
        double fastPace = 3 * MiB;
        double[][] out = new double[2][];
        List<Thread> threads = new ArrayList<>();
        List<Throwable> failed = new java.util.concurrent.CopyOnWriteArrayList<>();
        threads.add(new Thread(() -> {
            try { out[0] = produceFor("java-slow", "java-quota-slow", seconds, null); } catch (Throwable t) { failed.add(t); }
        }));
        threads.add(new Thread(() -> {
            try { out[1] = produceFor("java-fast", "java-quota-fast", seconds, fastPace); } catch (Throwable t) { failed.add(t); }
        }));
        threads.forEach(Thread::start);
        for (Thread t : threads) {
            t.join();
        }
        assertTrue(failed.isEmpty(), failed.toString());
        double rate = out[0][0] / seconds;
        System.out.printf("java: throttled producer %.3f MiB/s (quota 1), largest throttle %.0f ms; unthrottled %.3f MiB/s (paced at 3)%n",
                rate / MiB, out[0][1], out[1][0] / seconds / MiB);
        assertTrue(Math.abs(rate - MiB) <= 0.1 * MiB, "throttled producer at " + rate / MiB + " MiB/s");
        assertTrue(out[0][1] > 0, "the throttled producer was never told of a throttle");
        assertTrue(out[1][0] >= 0.9 * fastPace * seconds, "unthrottled producer at " + out[1][0] / seconds / MiB);
        assertEquals(0.0, out[1][1]);
    }

    @Test
    void aConsumerOverItsQuotaIsHeldNearIt() throws Exception {
        String topic = "java-quota-read";
        byte[] value = new byte[10_000];
        int records = 2_500;
        try (Admin admin = Clients.admin(brokers.broker.bootstrap())) {
            Clients.createTopic(admin, topic, 1, 1, Map.of());
            alter(admin, entity(ClientQuotaEntity.CLIENT_ID, "java-slow-reader"), "consumer_byte_rate", MiB);
        }
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(brokers.broker.bootstrap(), Map.of())) {
            for (int i = 0; i < records; i++) {
                p.send(new ProducerRecord<>(topic, value));
            }
            p.flush();
        }
        int seconds = 20;
        long got = 0;
        try (var c = Clients.consumer(brokers.broker.bootstrap(), Map.of(
                "client.id", "java-slow-reader", "group.id", "java-slow-reader"))) {
            c.assign(List.of(new org.apache.kafka.common.TopicPartition(topic, 0)));
            long start = System.nanoTime();
            while ((System.nanoTime() - start) / 1e9 < seconds) {
                for (var r : c.poll(java.time.Duration.ofMillis(100))) {
                    got += r.value().length;
                }
            }
        }
        double rate = (double) got / seconds;
        System.out.printf("java: throttled consumer %.3f MiB/s (quota 1)%n", rate / MiB);
        assertTrue(Math.abs(rate - MiB) <= 0.1 * MiB, "throttled consumer at " + rate / MiB + " MiB/s");
    }

    @Test
    void topicsCreatedInALoopAreHeldByTheMutationQuota() throws Exception {
        try (Admin admin = Clients.admin(brokers.broker.bootstrap())) {
            alter(admin, entity(ClientQuotaEntity.CLIENT_ID, "java-topic-maker"), "controller_mutation_rate", 0.5);
        }
        try (Admin maker = Clients.admin(brokers.broker.bootstrap(),
                Map.of("client.id", "java-topic-maker"))) {
            // A burst of 5.5 partitions: two topics of four, the second taking the bucket to
            // -2.5 (five seconds to refill).
            List<NewTopic> topics = new ArrayList<>();
            for (int i = 0; i < 2; i++) {
                topics.add(new NewTopic("java-made-" + i, 4, (short) 1));
            }
            maker.createTopics(topics).all().get();
            // The maker's own connection now waits out the throttle it was told; a second
            // client with the same id, asking at once, is refused while the bucket is below
            // zero, when told not to wait and ask again ...
            try (Admin other = Clients.admin(brokers.broker.bootstrap(),
                    Map.of("client.id", "java-topic-maker"))) {
                var e = assertThrows(ExecutionException.class, () -> other.createTopics(
                    List.of(new NewTopic("java-made-2", 1, (short) 1)),
                        new CreateTopicsOptions().retryOnQuotaViolation(false)).all().get());
                assertInstanceOf(ThrottlingQuotaExceededException.class, e.getCause());
                assertTrue(((ThrottlingQuotaExceededException) e.getCause()).throttleTimeMs() > 0);
                // ... and made once the bucket refills, when it asks again (the default).
                other.createTopics(List.of(new NewTopic("java-made-3", 1, (short) 1))).all().get();
            }
        }
    }
}
