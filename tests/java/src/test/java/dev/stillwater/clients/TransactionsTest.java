package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Transactions with the Java client against one broker: a transactional producer committing and
 * aborting across three partitions, read by a read_committed and a read_uncommitted consumer;
 * consume-transform-produce with the consumer's group metadata (KIP-447); a zombie fenced by a
 * new instance with its id; the Admin client's listTransactions and describeTransactions; and a
 * Kafka Streams word count at exactly_once_v2 whose counts are exact.
 */
@ExtendWith(Harness.class)
class TransactionsTest {
    @TempDir
    static Path dir;
    @RegisterExtension
    static final Brokers brokers = Brokers.one();

    static KafkaProducer<String, String> txnProducer(String id) {
        return new KafkaProducer<>(Clients.props(brokers.bootstrap(), Map.of(
                ProducerConfig.TRANSACTIONAL_ID_CONFIG, id,
                ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName(),
                ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName())));
    }

    static List<String> values(String topic, String isolation, int expected, Duration timeout) {
        return Clients.readAll(brokers.bootstrap(), topic, expected, timeout,
                        Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))
                .stream()
                .map(r -> new String(r.value(), StandardCharsets.UTF_8))
                .sorted()
                .collect(Collectors.toList());
    }

    /** 12 transactions of 500 records over three partitions; every third aborted. */
    @Test
    void readCommittedSeesOnlyCommittedTransactionsAndReadUncommittedSeesAll() throws Exception {
        Clients.createTopic(brokers.admin, "java-txn", 3);
        List<String> committed = new ArrayList<>();
        List<String> all = new ArrayList<>();
        try (KafkaProducer<String, String> producer = txnProducer("java-mixed")) {
            producer.initTransactions();
            for (int t = 0; t < 12; t++) {
                producer.beginTransaction();
                List<String> batch = new ArrayList<>();
                for (int i = 0; i < 500; i++) {
                    String v = String.format("t%02d-%04d", t, i);
                    producer.send(new ProducerRecord<>("java-txn", i % 3, null, v));
                    batch.add(v);
                }
                all.addAll(batch);
                if (t % 3 == 2) {
                    producer.flush();
                    producer.abortTransaction();
                } else {
                    producer.commitTransaction();
                    committed.addAll(batch);
                }
            }
        }
        committed.sort(null);
        all.sort(null);
        assertEquals(committed, values("java-txn", "read_committed", committed.size() + 1, Duration.ofSeconds(10)));
        assertEquals(all, values("java-txn", "read_uncommitted", all.size(), Duration.ofSeconds(30)));
    }

    /** 3,000 records moved from one topic to another in transactions with the consumer's offsets. */
    @Test
    void consumeTransformProduceWithTheConsumersGroupMetadataIsExactlyOnce() throws Exception {
        Clients.createTopic(brokers.admin, "ctp-source", 3);
        Clients.createTopic(brokers.admin, "ctp-sink", 3);
        try (KafkaProducer<String, String> source = txnProducer("ctp-source-writer")) {
            source.initTransactions();
            source.beginTransaction();
            for (int i = 0; i < 3000; i++) {
                source.send(new ProducerRecord<>("ctp-source", i % 3, null, "in-" + i));
            }
            source.commitTransaction();
        }
        Map<String, Object> conf = new HashMap<>();
        conf.put(ConsumerConfig.GROUP_ID_CONFIG, "ctp-java");
        conf.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        conf.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        conf.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        conf.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        conf.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        int moved = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(Clients.props(brokers.bootstrap(), conf));
             KafkaProducer<String, String> producer = txnProducer("ctp-java-1")) {
            consumer.subscribe(List.of("ctp-source"));
            producer.initTransactions();
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            while (moved < 3000 && System.nanoTime() < deadline) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                if (records.isEmpty()) {
                    continue;
                }
                producer.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    producer.send(new ProducerRecord<>("ctp-sink", r.partition(), null, r.value().replace("in-", "out-")));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                producer.commitTransaction();
                moved += records.count();
            }
        }
        assertEquals(3000, moved);
        List<String> out = values("ctp-sink", "read_committed", 3001, Duration.ofSeconds(10));
        assertEquals(3000, out.size());
        assertEquals(3000, Set.copyOf(out).size());
        Map<TopicPartition, OffsetAndMetadata> committed = brokers.admin
                .listConsumerGroupOffsets("ctp-java").partitionsToOffsetAndMetadata().get();
        long total = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
        // The offset after each partition's last record (1,000 records each).
        assertEquals(3 * 1000, total, committed.toString());
    }

    @Test
    void aZombieIsFencedByANewInstanceAndTheAdminClientDescribesTransactions() throws Exception {
        Clients.createTopic(brokers.admin, "fencing", 1);
        try (KafkaProducer<String, String> zombie = txnProducer("java-fenced")) {
            zombie.initTransactions();
            zombie.beginTransaction();
            zombie.send(new ProducerRecord<>("fencing", "zombie-1")).get();
            TransactionDescription ongoing = brokers.admin.describeTransactions(List.of("java-fenced"))
                    .description("java-fenced").get();
            assertEquals("ONGOING", ongoing.state().name());
            assertEquals(Set.of(new TopicPartition("fencing", 0)), ongoing.topicPartitions());
            Collection<TransactionListing> listed = brokers.admin.listTransactions().all().get();
            assertTrue(listed.stream().anyMatch(l -> l.transactionalId().equals("java-fenced")), listed.toString());
            try (KafkaProducer<String, String> successor = txnProducer("java-fenced")) {
                successor.initTransactions();
                // The zombie's next write is refused at its old epoch (an abortable error, as
                // Kafka answers a produce), and its coordinator then says it is fenced.
                java.util.concurrent.ExecutionException refused = assertThrows(
                        java.util.concurrent.ExecutionException.class,
                        () -> zombie.send(new ProducerRecord<>("fencing", "zombie-2")).get());
                assertTrue(refused.getCause() instanceof org.apache.kafka.common.errors.InvalidProducerEpochException
                        || refused.getCause() instanceof ProducerFencedException, refused.toString());
                assertThrows(ProducerFencedException.class, zombie::abortTransaction);
                successor.beginTransaction();
                successor.send(new ProducerRecord<>("fencing", "successor"));
                successor.commitTransaction();
            }
        }
        assertEquals(List.of("successor"), values("fencing", "read_committed", 2, Duration.ofSeconds(5)));
    }

    /** Lines of five words of a 100-word vocabulary, and how often each word occurs. */
    static List<String> lines(int count, long seed, Map<String, Long> expected) {
        java.util.Random random = new java.util.Random(seed);
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            StringBuilder line = new StringBuilder();
            for (int w = 0; w < 5; w++) {
                String word = "w" + random.nextInt(100);
                expected.merge(word, 1L, Long::sum);
                line.append(w == 0 ? "" : " ").append(word);
            }
            lines.add(line.toString());
        }
        return lines;
    }

    /** A word count of 300 lines at exactly_once_v2 on one broker: the counts are exact. */
    @Test
    void streamsAtExactlyOnceV2CountsExactly() throws Exception {
        Clients.createTopic(brokers.admin, "eos-text", 2);
        Clients.createTopic(brokers.admin, "eos-counts", 2);
        Map<String, Long> expected = new TreeMap<>();
        List<String> lines = lines(300, 11, expected);
        try (KafkaProducer<String, String> p = new KafkaProducer<>(Clients.props(brokers.bootstrap(), Map.of(
                ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName(),
                ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName())))) {
            for (int i = 0; i < lines.size(); i++) {
                p.send(new ProducerRecord<>("eos-text", "line-" + i, lines.get(i)));
            }
        }
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream("eos-text", Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(line -> List.of(line.split(" ")))
                .groupBy((key, word) -> word, Grouped.with("by-word", Serdes.String(), Serdes.String()))
                .count(Materialized.as("eos-store"))
                .toStream()
                .to("eos-counts", Produced.with(Serdes.String(), Serdes.Long()));
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "java-eos");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers.bootstrap());
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        props.put(StreamsConfig.STATE_DIR_CONFIG, dir.resolve("eos-state").toString());
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        Map<String, Long> latest = new TreeMap<>();
        try (KafkaStreams streams = new KafkaStreams(builder.build(), props)) {
            streams.start();
            Map<String, Object> conf = new HashMap<>();
            conf.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            conf.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            conf.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
            conf.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            try (KafkaConsumer<String, Long> consumer = new KafkaConsumer<>(Clients.props(brokers.bootstrap(), conf))) {
                consumer.assign(List.of(new TopicPartition("eos-counts", 0), new TopicPartition("eos-counts", 1)));
                long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
                while (!latest.equals(expected) && System.nanoTime() < deadline) {
                    consumer.poll(Duration.ofMillis(500)).forEach(r -> latest.put(r.key(), r.value()));
                }
            }
            assertEquals(KafkaStreams.State.RUNNING, streams.state());
        }
        assertEquals(expected, latest);
    }
}
