package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The Java clients against three brokers (replication factor 3): a producer with its defaults
 * and a consumer group while brokers are SIGKILLed and restarted, partition reassignments, and
 * preferred leader elections asked for through the Admin client.
 */
@ExtendWith(Harness.class)
class ClusterTest {
    /** No automatic return of leaderships: the election test asks for it itself. */
    @RegisterExtension
    static final Brokers brokers = Brokers.three("leader_rebalance_ms=0");

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /**
     * 20,000 records of 100 B (6 partitions) from a Java producer with its defaults while the
     * leader of partition 0 is SIGKILLed and restarted three times, and a group of two members
     * reads along, committing. Every acknowledged record is stored exactly once, and the group
     * has read every one of them.
     */
    @Test
    void nothingAcknowledgedIsLostWhileBrokersAreKilledAndClientsRecoverByThemselves() throws Exception {
        String topic = "failover";
        Clients.createTopic(brokers.admin, topic, 6, 3, Map.of("min.insync.replicas", "2"));
        brokers.cluster.awaitLeaders(brokers.admin, Map.of(topic, 6), Duration.ofSeconds(60));
        int count = 20_000;
        Set<Integer> acked = ConcurrentHashMap.newKeySet();
        AtomicReference<Exception> produceFailure = new AtomicReference<>();
        Map<Integer, Integer> consumed = new ConcurrentHashMap<>();
        AtomicBoolean stopConsumers = new AtomicBoolean();
        AtomicReference<Throwable> consumeFailure = new AtomicReference<>();
        List<Thread> consumers = new ArrayList<>();
        for (int m = 0; m < 2; m++) {
            Thread t = new Thread(() -> {
                try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(brokers.cluster.bootstrap(), Map.of(
                        ConsumerConfig.GROUP_ID_CONFIG, "failover-group"))) {
                    c.subscribe(List.of(topic));
                    while (!stopConsumers.get()) {
                        ConsumerRecords<byte[], byte[]> records = c.poll(Duration.ofMillis(200));
                        for (ConsumerRecord<byte[], byte[]> r : records) {
                            consumed.merge(Integer.parseInt(new String(r.value(), 0, 8, StandardCharsets.UTF_8)),
                                    1, Integer::sum);
                        }
                    }
                } catch (Throwable e) {
                    consumeFailure.compareAndSet(null, e);
                }
            });
            t.start();
            consumers.add(t);
        }
        Thread producerThread = new Thread(() -> {
            try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.cluster.bootstrap(), Map.of())) {
                for (int i = 0; i < count; i++) {
                    byte[] value = new byte[100];
                    System.arraycopy(bytes(String.format("%08d", i)), 0, value, 0, 8);
                    int index = i;
                    producer.send(new ProducerRecord<>(topic, bytes("key-" + i), value), (md, e) -> {
                        if (e == null) {
                            acked.add(index);
                        } else {
                            produceFailure.compareAndSet(null, e);
                        }
                    });
                    if (i % 200 == 199) {
                        Thread.sleep(100);
                    }
                }
            } catch (InterruptedException e) {
                produceFailure.compareAndSet(null, e);
            }
        });
        producerThread.start();
        for (int round = 0; round < 3; round++) {
            Thread.sleep(2_000);
            Broker leader = brokers.cluster.node(brokers.cluster.leaderOf(brokers.admin, topic, 0, Duration.ofSeconds(60)));
            leader.kill();
            Thread.sleep(3_000);
            leader.startReady();
        }
        producerThread.join(180_000);
        assertNull(produceFailure.get(), "a record failed with the producer's defaults");
        assertEquals(count, acked.size(), "records acknowledged");
        long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
        while (consumed.size() < count && System.nanoTime() < deadline) {
            Thread.sleep(200);
        }
        stopConsumers.set(true);
        for (Thread t : consumers) {
            t.join(60_000);
        }
        assertNull(consumeFailure.get(), "a group member failed");
        assertEquals(count, consumed.size(), "distinct records the group read");

        List<ConsumerRecord<byte[], byte[]>> stored = Clients.readAll(brokers.cluster.bootstrap(), topic, count,
                Duration.ofSeconds(90));
        Map<Integer, Integer> copies = new HashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : stored) {
            copies.merge(Integer.parseInt(new String(r.value(), 0, 8, StandardCharsets.UTF_8)), 1, Integer::sum);
        }
        assertEquals(count, copies.size(), "distinct records stored");
        List<Integer> duplicated = copies.entrySet().stream().filter(e -> e.getValue() > 1)
                .map(Map.Entry::getKey).sorted().limit(20).toList();
        assertTrue(duplicated.isEmpty(), "stored twice by an idempotent producer (first 20): " + duplicated);
    }

    /**
     * Leader discovery (KIP-951): 100 B records sent one at a time (acks=all) to a partition of
     * three replicas while its leader is stopped gracefully (it hands its leaderships over
     * first, answering produces NOT_LEADER_OR_FOLLOWER with the new leader and its address)
     * and restarted, twice, then SIGKILLed (no answer: the producer must ask for metadata).
     * Every acknowledged record is stored exactly once, and no send fails. Prints, per move,
     * the longest wait between two acknowledgements and the Metadata requests the other
     * brokers answered meanwhile: the figures of docs/clients.md.
     */
    @Test
    void aProducerFollowsMovedLeadershipsByTheAnswersOfTheOldLeader() throws Exception {
        String topic = "moving";
        Clients.createTopic(brokers.admin, topic, 1, 3, Map.of("min.insync.replicas", "2"));
        brokers.cluster.awaitLeaders(brokers.admin, Map.of(topic, 1), Duration.ofSeconds(60));
        List<Long> acked = java.util.Collections.synchronizedList(new ArrayList<>());
        AtomicBoolean done = new AtomicBoolean();
        AtomicReference<Exception> failure = new AtomicReference<>();
        Thread producerThread = new Thread(() -> {
            try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.cluster.bootstrap(), Map.of())) {
                for (int i = 0; !done.get(); i++) {
                    byte[] value = new byte[100];
                    System.arraycopy(bytes(String.format("%08d", i)), 0, value, 0, 8);
                    producer.send(new ProducerRecord<>(topic, value)).get();
                    acked.add(System.nanoTime());
                }
            } catch (Exception e) {
                failure.compareAndSet(null, e);
            }
        });
        producerThread.start();
        for (String move : List.of("graceful stop", "graceful stop", "SIGKILL")) {
            Thread.sleep(1_500);
            int leaderId = brokers.cluster.leaderOf(brokers.admin, topic, 0, Duration.ofSeconds(60));
            Broker leader = brokers.cluster.node(leaderId);
            List<Broker> others = brokers.cluster.nodes.stream().filter(n -> n != leader).toList();
            long metadataBefore = metadataRequests(others);
            int ackedBefore = acked.size();
            long movedAt = System.nanoTime();
            if (move.equals("SIGKILL")) {
                leader.kill();
            } else {
                leader.stop();
            }
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            while (acked.size() < ackedBefore + 200 && System.nanoTime() < deadline && failure.get() == null) {
                Thread.sleep(20);
            }
            long metadata = metadataRequests(others) - metadataBefore;
            List<Long> window;
            synchronized (acked) {
                window = new ArrayList<>(acked.subList(Math.max(0, ackedBefore - 1), acked.size()));
            }
            long longest = 0;
            long previous = movedAt;
            for (long at : window) {
                if (at > movedAt) {
                    longest = Math.max(longest, at - previous);
                }
                previous = Math.max(previous, at);
            }
            System.out.printf("leader %d, %s: longest wait for an acknowledgement %d ms, "
                    + "Metadata requests answered by the others %d%n", leaderId, move, longest / 1_000_000, metadata);
            leader.startReady();
            brokers.cluster.awaitBrokers(brokers.admin, 3, Duration.ofSeconds(60));
        }
        done.set(true);
        producerThread.join(60_000);
        assertNull(failure.get(), "a send failed with the producer's defaults");
        int count = acked.size();
        List<ConsumerRecord<byte[], byte[]>> stored = Clients.readAll(brokers.cluster.bootstrap(), topic, count,
                Duration.ofSeconds(90));
        Set<String> distinct = new HashSet<>();
        for (ConsumerRecord<byte[], byte[]> r : stored) {
            distinct.add(new String(r.value(), 0, 8, StandardCharsets.UTF_8));
        }
        assertEquals(count, stored.size(), "records stored (an idempotent producer's, each once)");
        assertEquals(count, distinct.size(), "distinct records stored");
    }

    /** The Metadata requests `nodes` answered so far (their request counters). */
    static long metadataRequests(List<Broker> nodes) throws Exception {
        long total = 0;
        for (Broker node : nodes) {
            if (!node.alive()) {
                continue;
            }
            String url = "http://127.0.0.1:" + node.metricsPort + "/metrics";
            try (java.io.InputStream in = java.net.URI.create(url).toURL().openStream()) {
                String text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                java.util.regex.Matcher m = java.util.regex.Pattern
                        .compile("(?m)^stillwater_requests_total\\{api=\"Metadata\"\\} (\\d+)").matcher(text);
                if (m.find()) {
                    total += Long.parseLong(m.group(1));
                }
            }
        }
        return total;
    }

    /** A partition's replicas moved through the Admin client, listed while in progress; its data follows. */
    @Test
    void partitionsAreReassignedAndTheirRecordsFollow() throws Exception {
        String topic = "moved";
        Clients.createTopic(brokers.admin, topic, 2, 2, Map.of());
        brokers.cluster.awaitLeaders(brokers.admin, Map.of(topic, 2), Duration.ofSeconds(60));
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.cluster.bootstrap(), Map.of())) {
            for (int i = 0; i < 2_000; i++) {
                producer.send(new ProducerRecord<>(topic, i % 2, bytes("k"), bytes(Integer.toString(i))));
            }
        }
        TopicDescription before = brokers.admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        Map<TopicPartition, Optional<NewPartitionReassignment>> moves = new HashMap<>();
        Map<Integer, List<Integer>> wanted = new HashMap<>();
        for (TopicPartitionInfo p : before.partitions()) {
            Set<Integer> had = new HashSet<>();
            p.replicas().forEach(n -> had.add(n.id()));
            int outsider = List.of(1, 2, 3).stream().filter(n -> !had.contains(n)).findFirst().orElseThrow();
            // The replica outside the set comes in first (the preferred leader); the first one goes.
            List<Integer> target = List.of(outsider, p.replicas().get(1).id());
            wanted.put(p.partition(), target);
            moves.put(new TopicPartition(topic, p.partition()), Optional.of(new NewPartitionReassignment(target)));
        }
        brokers.admin.alterPartitionReassignments(moves).all().get();
        brokers.admin.listPartitionReassignments().reassignments().get();
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        Map<Integer, List<Integer>> now = new HashMap<>();
        while (System.nanoTime() < deadline) {
            now.clear();
            for (TopicPartitionInfo p : brokers.admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic)
                    .partitions()) {
                now.put(p.partition(), p.replicas().stream().map(n -> n.id()).toList());
            }
            if (now.equals(wanted) && brokers.admin.listPartitionReassignments().reassignments().get().isEmpty()) {
                break;
            }
            Thread.sleep(200);
        }
        assertEquals(wanted, now, "replicas after the reassignment");
        List<ConsumerRecord<byte[], byte[]>> read = Clients.readAll(brokers.cluster.bootstrap(), topic, 2_000,
                Duration.ofSeconds(60));
        assertEquals(2_000, read.size());
    }

    /**
     * A broker killed and back: the leaderships it lost stay with the others (no automatic
     * return here) until electLeaders(PREFERRED) hands them back, all of them.
     */
    @Test
    void aPreferredLeaderElectionHandsLeadershipsBack() throws Exception {
        String topic = "preferred";
        Clients.createTopic(brokers.admin, topic, 6, 3, Map.of());
        brokers.cluster.awaitLeaders(brokers.admin, Map.of(topic, 6), Duration.ofSeconds(60));
        Broker victim = brokers.cluster.node(2);
        victim.kill();
        Thread.sleep(500);
        brokers.cluster.awaitLeaders(brokers.admin, Map.of(topic, 6), Duration.ofSeconds(60));
        victim.startReady();
        brokers.cluster.awaitBrokers(brokers.admin, 3, Duration.ofSeconds(60));
        Set<TopicPartition> partitions = new HashSet<>();
        for (int p = 0; p < 6; p++) {
            partitions.add(new TopicPartition(topic, p));
        }
        // Nothing hands the leaderships back by itself (leader_rebalance_ms=0).
        Thread.sleep(2_000);
        assertTrue(notPreferred(topic).stream().anyMatch(p -> p.contains("replicas [2")),
                "no leadership of node 2's was left to hand back: " + notPreferred(topic));
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        List<String> notPreferred = List.of("not asked yet");
        while (System.nanoTime() < deadline) {
            try {
                brokers.admin.electLeaders(ElectionType.PREFERRED, partitions).partitions().get();
            } catch (Exception e) {
                // a replica still catching up is not eligible yet: ask again
            }
            notPreferred = notPreferred(topic);
            if (notPreferred.isEmpty()) {
                break;
            }
            Thread.sleep(500);
        }
        assertTrue(notPreferred.isEmpty(), "partitions not led by their preferred replica: " + notPreferred);
        // Asked again, nothing needs electing.
        var results = brokers.admin.electLeaders(ElectionType.PREFERRED, partitions).partitions().get();
        for (var e : results.entrySet()) {
            assertTrue(e.getValue().isEmpty() || e.getValue().get()
                    instanceof org.apache.kafka.common.errors.ElectionNotNeededException, e.toString());
        }
    }

    /** The partitions of a topic not led by their first replica, described. */
    static List<String> notPreferred(String topic) throws Exception {
        return brokers.admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().stream()
                .filter(p -> p.leader() == null || p.leader().id() != p.replicas().get(0).id())
                .map(p -> p.partition() + " led by " + (p.leader() == null ? "none" : p.leader().id())
                        + ", replicas " + p.replicas().stream().map(n -> n.id()).toList())
                .toList();
    }
}
