package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Kafka Streams against three brokers: a word count with a state store (a repartition topic and
 * a compacted changelog topic, replicated three ways) counts a known input exactly right while a
 * broker restarts; at {@code exactly_once_v2} (transactions through the cluster's coordinators)
 * its counts are exact across a broker SIGKILL.
 */
@ExtendWith(Harness.class)
class StreamsTest {
    static final int WORDS = 200;

    @TempDir
    static Path dir;
    @RegisterExtension
    static final Brokers brokers = Brokers.three();

    static KafkaStreams wordCount(String app, String input, String output, String guarantee) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(line -> Arrays.asList(line.split(" ")))
                .groupBy((key, word) -> word, Grouped.with("by-word", Serdes.String(), Serdes.String()))
                .count(Materialized.as("counts"))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers.cluster.bootstrap());
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 3);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        props.put(StreamsConfig.STATE_DIR_CONFIG, dir.resolve("state-" + app).toString());
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        return new KafkaStreams(builder.build(), props);
    }

    /** Lines of five words from a vocabulary of {@link #WORDS}, and how often each word occurs. */
    static List<String> lines(int count, long seed, Map<String, Long> expected) {
        Random random = new Random(seed);
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            StringBuilder line = new StringBuilder();
            for (int w = 0; w < 5; w++) {
                String word = "w" + random.nextInt(WORDS);
                expected.merge(word, 1L, Long::sum);
                line.append(w == 0 ? "" : " ").append(word);
            }
            lines.add(line.toString());
        }
        return lines;
    }

    static void produce(String topic, List<String> lines) throws Exception {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(Clients.props(brokers.cluster.bootstrap(), Map.of(
                ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName(),
                ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName())))) {
            for (int i = 0; i < lines.size(); i++) {
                producer.send(new ProducerRecord<>(topic, "line-" + i, lines.get(i)));
            }
            producer.flush();
        }
    }

    /** The latest count of every word in the output topic, read from its start until it matches or time runs out. */
    static Map<String, Long> latestCounts(String topic, Map<String, Long> expected, Duration timeout) {
        return latestCounts(topic, expected, timeout, "read_uncommitted");
    }

    /** {@link #latestCounts} at {@code isolation} ({@code read_committed} or {@code read_uncommitted}). */
    static Map<String, Long> latestCounts(String topic, Map<String, Long> expected, Duration timeout, String isolation) {
        Map<String, Long> latest = new TreeMap<>();
        try (KafkaConsumer<String, Long> consumer = new KafkaConsumer<>(Clients.props(brokers.cluster.bootstrap(), Map.of(
                ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName(),
                ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName(),
                ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation,
                ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest")))) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo p : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
                partitions.add(new TopicPartition(topic, p.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            long deadline = System.nanoTime() + timeout.toNanos();
            while (!latest.equals(expected) && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(500))) {
                    latest.put(r.key(), r.value());
                }
            }
        }
        return latest;
    }

    /**
     * 20,000 lines (100,000 words, ~600 KB) in two halves, a broker restarted (SIGTERM) between
     * them while the application runs: every word's latest count is exactly its number in the
     * input; the changelog topic is compacted and the internal topics have three replicas.
     */
    @Test
    void aWordCountAtLeastOnceIsExactAcrossABrokerRestart() throws Exception {
        String app = "wordcount-alo";
        Clients.createTopic(brokers.admin, "text", 4, 3, Map.of());
        Clients.createTopic(brokers.admin, "word-counts", 4, 3, Map.of());
        Map<String, Long> expected = new TreeMap<>();
        List<String> first = lines(10_000, 1, expected);
        List<String> second = lines(10_000, 2, expected);
        AtomicReference<Throwable> crashed = new AtomicReference<>();
        try (KafkaStreams streams = wordCount(app, "text", "word-counts", StreamsConfig.AT_LEAST_ONCE)) {
            streams.setUncaughtExceptionHandler(e -> {
                crashed.compareAndSet(null, e);
                return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
            });
            streams.start();
            produce("text", first);
            Thread.sleep(3_000);
            Broker restarted = brokers.cluster.node(2);
            assertEquals(0, restarted.stop(), "broker 2's exit code on SIGTERM");
            Thread.sleep(2_000);
            restarted.startReady();
            produce("text", second);
            Map<String, Long> counted = latestCounts("word-counts", expected, Duration.ofSeconds(120));
            assertEquals(null, crashed.get(), "the application's threads failed");
            assertEquals(expected.size(), counted.size(), "words counted");
            Map<String, String> wrong = expected.entrySet().stream()
                    .filter(e -> !e.getValue().equals(counted.get(e.getKey())))
                    .limit(20)
                    .collect(Collectors.toMap(Map.Entry::getKey,
                            e -> "expected " + e.getValue() + ", counted " + counted.get(e.getKey())));
            assertTrue(wrong.isEmpty(), "words counted wrong (first 20): " + wrong);
        }
        String changelog = app + "-counts-changelog";
        String repartition = app + "-by-word-repartition";
        Set<String> topics = brokers.admin.listTopics().names().get();
        assertTrue(topics.containsAll(List.of(changelog, repartition)), topics.toString());
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
        Config config = brokers.admin.describeConfigs(List.of(resource)).all().get().get(resource);
        assertEquals("compact", config.get("cleanup.policy").value());
        for (String internal : List.of(changelog, repartition)) {
            brokers.admin.describeTopics(List.of(internal)).allTopicNames().get().get(internal).partitions()
                    .forEach(p -> assertEquals(3, p.replicas().size(), internal + " " + p));
        }
    }

    /**
     * At exactly_once_v2 on three brokers: 10,000 lines (50,000 words, ~300 KB) in two halves,
     * a broker SIGKILLed and restarted between them while the application runs (its
     * transactions' coordinator, or a partition leader, or both): read at read_committed,
     * every word's latest count is exactly its number in the input — nothing counted twice
     * by a transaction replayed after the kill, nothing lost.
     */
    @Test
    void aWordCountExactlyOnceV2IsExactAcrossABrokerKill() throws Exception {
        String app = "wordcount-eos";
        Clients.createTopic(brokers.admin, "text-eos", 4, 3, Map.of());
        Clients.createTopic(brokers.admin, "word-counts-eos", 4, 3, Map.of());
        Map<String, Long> expected = new TreeMap<>();
        List<String> first = lines(5_000, 3, expected);
        List<String> second = lines(5_000, 4, expected);
        AtomicReference<Throwable> crashed = new AtomicReference<>();
        try (KafkaStreams streams = wordCount(app, "text-eos", "word-counts-eos",
                StreamsConfig.EXACTLY_ONCE_V2)) {
            streams.setUncaughtExceptionHandler(e -> {
                crashed.compareAndSet(null, e);
                // A thread whose producer was fenced or lost its transaction is replaced, as
                // an application runs in production.
                return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
            });
            streams.start();
            produce("text-eos", first);
            Thread.sleep(3_000);
            Broker killed = brokers.cluster.node(3);
            killed.kill();
            Thread.sleep(2_000);
            killed.startReady();
            produce("text-eos", second);
            Map<String, Long> counted = latestCounts("word-counts-eos", expected,
                    Duration.ofSeconds(180), "read_committed");
            System.out.println("exactly_once_v2 across a kill; a thread replaced after: " + crashed.get());
            assertEquals(expected.size(), counted.size(), "words counted");
            Map<String, String> wrong = expected.entrySet().stream()
                    .filter(e -> !e.getValue().equals(counted.get(e.getKey())))
                    .limit(20)
                    .collect(Collectors.toMap(Map.Entry::getKey,
                            e -> "expected " + e.getValue() + ", counted " + counted.get(e.getKey())));
            assertTrue(wrong.isEmpty(), "words counted wrong (first 20): " + wrong);
        }
    }
}
