package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.utils.Utils;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The Java producer against one broker: its defaults (idempotence, acks=all, five requests in
 * flight), every codec, records near the request size limit and over the broker's, delivery
 * timeouts while the broker is down, and the partitioners over many partitions.
 */
@ExtendWith(Harness.class)
class ProducerTest {
    @TempDir
    static Path dir;
    @RegisterExtension
    static final Brokers brokers = Brokers.one();

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** 20,000 keyed records of 100 B (2 MB) over 12 partitions with the producer's defaults. */
    @Test
    void theDefaultProducerStoresEveryRecordOnceAndInOrder() throws Exception {
        String topic = "defaults";
        Clients.createTopic(brokers.admin, topic, 12);
        int count = 20_000;
        Map<Integer, List<Integer>> sentPerPartition = new HashMap<>();
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.broker.bootstrap(), Map.of())) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                byte[] value = new byte[100];
                System.arraycopy(bytes(String.format("%08d", i)), 0, value, 0, 8);
                acks.add(producer.send(new ProducerRecord<>(topic, bytes("key-" + (i % 997)), value)));
            }
            for (int i = 0; i < count; i++) {
                RecordMetadata md = acks.get(i).get();
                sentPerPartition.computeIfAbsent(md.partition(), p -> new ArrayList<>()).add(i);
            }
        }
        List<ConsumerRecord<byte[], byte[]>> read = Clients.readAll(brokers.broker.bootstrap(), topic, count,
                Duration.ofSeconds(60));
        assertEquals(count, read.size(), "records read back");
        Map<Integer, List<Integer>> readPerPartition = new HashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : read) {
            int i = Integer.parseInt(new String(r.value(), 0, 8, StandardCharsets.UTF_8));
            readPerPartition.computeIfAbsent(r.partition(), p -> new ArrayList<>()).add(i);
            assertEquals("key-" + (i % 997), new String(r.key(), StandardCharsets.UTF_8));
        }
        // Every partition holds what was acknowledged to it, each record once, in the order sent.
        assertEquals(sentPerPartition, readPerPartition);
    }

    /** 3,000 records of 1 KiB (half compressible) with headers per codec, read back byte-exact. */
    @ParameterizedTest
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void everyCodecIsStoredAndReadBackByteExact(String codec) throws Exception {
        String topic = "codec-" + codec;
        Clients.createTopic(brokers.admin, topic, 3);
        int count = 3_000;
        Random random = new Random(codec.hashCode());
        List<byte[]> values = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.broker.bootstrap(),
                Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec, ProducerConfig.LINGER_MS_CONFIG, 5))) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                byte[] value = new byte[1024];
                random.nextBytes(value);
                java.util.Arrays.fill(value, 512, 1024, (byte) 'x');
                values.add(value);
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, i % 3, bytes("k" + i), value);
                record.headers().add(new RecordHeader("index", bytes(Integer.toString(i))));
                record.headers().add(new RecordHeader("empty", new byte[0]));
                acks.add(producer.send(record));
            }
            for (Future<RecordMetadata> ack : acks) {
                ack.get();
            }
        }
        List<ConsumerRecord<byte[], byte[]>> read = Clients.readAll(brokers.broker.bootstrap(), topic, count,
                Duration.ofSeconds(60));
        assertEquals(count, read.size());
        Set<Integer> seen = new HashSet<>();
        for (ConsumerRecord<byte[], byte[]> r : read) {
            int i = Integer.parseInt(new String(r.headers().lastHeader("index").value(), StandardCharsets.UTF_8));
            assertTrue(seen.add(i), "record " + i + " read twice");
            assertEquals("k" + i, new String(r.key(), StandardCharsets.UTF_8));
            assertArrayEquals(values.get(i), r.value(), "value of record " + i);
            assertEquals(0, r.headers().lastHeader("empty").value().length);
        }
    }

    /**
     * Records just under the client's {@code max.request.size} (1 MiB) and the broker's
     * {@code max.message.bytes} are stored; one over the broker's limit is refused with
     * RecordTooLargeException and nothing of it stored, and the producer goes on.
     */
    @Test
    void recordsNearTheSizeLimitsAreStoredAndOneOverIsRefused() throws Exception {
        String topic = "large";
        Clients.createTopic(brokers.admin, topic, 1);
        Random random = new Random(7);
        List<byte[]> values = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.broker.bootstrap(),
                Map.of(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 4 << 20))) {
            for (int i = 0; i < 8; i++) {
                byte[] value = new byte[1_000_000];
                random.nextBytes(value);
                values.add(value);
                producer.send(new ProducerRecord<>(topic, value)).get();
            }
            byte[] tooLarge = new byte[2 << 20];
            ExecutionException refused = assertThrows(ExecutionException.class,
                    () -> producer.send(new ProducerRecord<>(topic, tooLarge)).get());
            assertInstanceOf(RecordTooLargeException.class, refused.getCause());
            byte[] after = bytes("after the refused one");
            producer.send(new ProducerRecord<>(topic, after)).get();
            values.add(after);
        }
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.broker.bootstrap(), Map.of())) {
            // The client's own limit (1 MiB by default) is checked before anything is sent.
            ExecutionException refused = assertThrows(ExecutionException.class,
                    () -> producer.send(new ProducerRecord<>(topic, new byte[(1 << 20) + 1])).get());
            assertInstanceOf(RecordTooLargeException.class, refused.getCause());
        }
        List<ConsumerRecord<byte[], byte[]>> read = Clients.readAll(brokers.broker.bootstrap(), topic, values.size(),
                Duration.ofSeconds(60), Map.of("max.partition.fetch.bytes", 1 << 20));
        assertEquals(values.size(), read.size());
        for (int i = 0; i < values.size(); i++) {
            assertArrayEquals(values.get(i), read.get(i).value(), "record " + i);
        }
    }

    /**
     * Records sent while the broker is down expire after {@code delivery.timeout.ms} with a
     * TimeoutException; the same producer delivers again once the broker is back, and nothing
     * of the expired records is stored.
     */
    @Test
    void deliveryTimesOutWhileTheBrokerIsDownAndTheProducerRecovers() throws Exception {
        try (Broker own = new Broker(dir.resolve("delivery"), "delivery-broker", 1).startReady();
             Admin ownAdmin = Clients.admin(own.bootstrap())) {
            String topic = "delivery";
            Clients.createTopic(ownAdmin, topic, 2);
            try (KafkaProducer<byte[], byte[]> producer = Clients.producer(own.bootstrap(), Map.of(
                    ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 6_000,
                    ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 3_000,
                    ProducerConfig.LINGER_MS_CONFIG, 0))) {
                producer.send(new ProducerRecord<>(topic, bytes("before"))).get();
                own.stop();
                long sent = System.nanoTime();
                List<Future<RecordMetadata>> lost = new ArrayList<>();
                for (int i = 0; i < 10; i++) {
                    lost.add(producer.send(new ProducerRecord<>(topic, bytes("while-down-" + i))));
                }
                for (Future<RecordMetadata> f : lost) {
                    ExecutionException e = assertThrows(ExecutionException.class, f::get);
                    assertInstanceOf(TimeoutException.class, e.getCause(), e.toString());
                }
                double waited = (System.nanoTime() - sent) / 1e9;
                assertTrue(waited >= 5.0 && waited < 60.0, "expired after " + waited + " s");
                own.startReady();
                AtomicReference<Exception> failure = new AtomicReference<>();
                List<Future<RecordMetadata>> after = new ArrayList<>();
                for (int i = 0; i < 100; i++) {
                    after.add(producer.send(new ProducerRecord<>(topic, bytes("after-" + i)),
                            (md, e) -> { if (e != null) failure.compareAndSet(null, e); }));
                }
                for (Future<RecordMetadata> f : after) {
                    f.get();
                }
                assertNull(failure.get());
            }
            List<ConsumerRecord<byte[], byte[]>> read = Clients.readAll(own.bootstrap(), topic, 101,
                    Duration.ofSeconds(30));
            Set<String> values = new HashSet<>();
            read.forEach(r -> values.add(new String(r.value(), StandardCharsets.UTF_8)));
            assertEquals(101, read.size(), "records read: " + values);
            assertTrue(values.contains("before") && values.contains("after-99"));
            assertTrue(values.stream().noneMatch(v -> v.startsWith("while-down")), values.toString());
        }
    }

    /**
     * Over 300 partitions: a keyed record goes where the Java client's murmur2 partitioner says
     * (30,000 records), unkeyed records are spread by the sticky partitioner (10,000 records),
     * and every partition holds what was acknowledged to it.
     */
    @Test
    void thePartitionersSpreadRecordsOverManyPartitions() throws Exception {
        String topic = "many";
        int partitions = 300;
        Clients.createTopic(brokers.admin, topic, partitions);
        Map<Integer, Integer> acked = new HashMap<>();
        Set<Integer> unkeyedPartitions = new HashSet<>();
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.broker.bootstrap(),
                Map.of(ProducerConfig.LINGER_MS_CONFIG, 5, ProducerConfig.BATCH_SIZE_CONFIG, 4096))) {
            List<Future<RecordMetadata>> keyed = new ArrayList<>();
            List<byte[]> keys = new ArrayList<>();
            for (int i = 0; i < 30_000; i++) {
                byte[] key = bytes("customer-" + i);
                keys.add(key);
                keyed.add(producer.send(new ProducerRecord<>(topic, key, new byte[100])));
            }
            for (int i = 0; i < keyed.size(); i++) {
                RecordMetadata md = keyed.get(i).get();
                int expected = Utils.toPositive(Utils.murmur2(keys.get(i))) % partitions;
                assertEquals(expected, md.partition(), "partition of key customer-" + i);
                acked.merge(md.partition(), 1, Integer::sum);
            }
            List<Future<RecordMetadata>> unkeyed = new ArrayList<>();
            for (int i = 0; i < 10_000; i++) {
                unkeyed.add(producer.send(new ProducerRecord<>(topic, new byte[100])));
            }
            for (Future<RecordMetadata> f : unkeyed) {
                RecordMetadata md = f.get();
                unkeyedPartitions.add(md.partition());
                acked.merge(md.partition(), 1, Integer::sum);
            }
        }
        assertTrue(unkeyedPartitions.size() >= 20, "unkeyed records went to " + unkeyedPartitions.size());
        var offsets = brokers.admin.listOffsets(acked.keySet().stream().collect(java.util.stream.Collectors.toMap(
                p -> new org.apache.kafka.common.TopicPartition(topic, p),
                p -> org.apache.kafka.clients.admin.OffsetSpec.latest()))).all().get();
        for (Map.Entry<Integer, Integer> e : acked.entrySet()) {
            long end = offsets.get(new org.apache.kafka.common.TopicPartition(topic, e.getKey())).offset();
            assertEquals((long) e.getValue(), end, "end offset of partition " + e.getKey());
        }
    }
}
