package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * What the Java clients ask of a broker that does not serve everything Kafka does: they read the
 * served APIs from ApiVersions and never send one that is not there, so a feature that needs one
 * fails at once in the client with UnsupportedVersionException (no hang, no closed connection),
 * and everything else goes on. The broker's request counters say which APIs the clients sent.
 */
@ExtendWith(Harness.class)
class UnservedApisTest {
    @RegisterExtension
    static final Brokers brokers = Brokers.one();

    /** The broker's {@code stillwater_requests_total} by API, and one other counter. */
    static Map<String, Long> metrics() throws IOException {
        try (InputStream in = URI.create("http://127.0.0.1:" + brokers.broker.metricsPort + "/metrics").toURL().openStream()) {
            String text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            Map<String, Long> out = new TreeMap<>();
            Matcher m = Pattern.compile("(?m)^stillwater_requests_total\\{api=\"([^\"]+)\"\\} (\\d+)").matcher(text);
            while (m.find()) {
                out.put(m.group(1), Long.parseLong(m.group(2)));
            }
            Matcher malformed = Pattern.compile("(?m)^stillwater_malformed_requests_total (\\d+)").matcher(text);
            assertTrue(malformed.find(), "stillwater_malformed_requests_total not exported");
            out.put("(malformed)", Long.parseLong(malformed.group(1)));
            return out;
        }
    }

    static void assertUnsupported(AdminTest.Call call, String what) {
        long started = System.nanoTime();
        Throwable failure = AdminTest.failure(call);
        double seconds = (System.nanoTime() - started) / 1e9;
        assertInstanceOf(UnsupportedVersionException.class, failure, what + ": " + failure);
        assertTrue(seconds < 10, what + " took " + seconds + " s to fail");
    }

    @Test
    void featuresNeedingAnUnservedApiFailAtOnceInTheClientAndNothingElseIsDisturbed() throws Exception {
        Clients.createTopic(brokers.admin, "served", 2);
        // Delegation tokens are not served.
        assertUnsupported(() -> brokers.admin.describeDelegationToken().delegationTokens().get(), "describeDelegationToken");

        // Everything else goes on: a producer (with client telemetry on, the 4.x default) and a group.
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.broker.bootstrap(),
                Map.of("enable.metrics.push", "true"))) {
            for (int i = 0; i < 100; i++) {
                producer.send(new ProducerRecord<>("served", ("v" + i).getBytes(StandardCharsets.UTF_8))).get();
            }
        } catch (org.apache.kafka.common.config.ConfigException olderClient) {
            throw new AssertionError("enable.metrics.push is a 3.7+ setting", olderClient);
        }
        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(brokers.broker.bootstrap(), Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, "classic"))) {
            consumer.subscribe(List.of("served"));
            int read = 0;
            long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
            while (read < 100 && System.nanoTime() < deadline) {
                read += consumer.poll(Duration.ofMillis(200)).count();
            }
            assertEquals(100, read);
            consumer.commitSync();
        }
        brokers.admin.describeTopics(List.of("served")).allTopicNames().get();
        brokers.admin.describeFeatures().featureMetadata().get();

        Map<String, Long> sent = metrics();
        System.out.println("APIs the Java clients sent: " + sent);
        assertEquals(0L, sent.get("(malformed)"), "requests refused as malformed or unserved: " + sent);
        for (String api : List.of(
                "DescribeDelegationToken", "GetTelemetrySubscriptions", "PushTelemetry")) {
            assertTrue(!sent.containsKey(api), api + " was sent although not served: " + sent);
        }
        // describeTopics goes by DescribeTopicPartitions (KIP-966) where a broker serves it.
        for (String api : List.of("ApiVersions", "Metadata", "Produce", "Fetch", "FindCoordinator",
                "JoinGroup", "SyncGroup", "OffsetCommit", "InitProducerId", "DescribeTopicPartitions")) {
            assertTrue(sent.getOrDefault(api, 0L) > 0, api + " not counted: " + sent);
        }
    }
}
