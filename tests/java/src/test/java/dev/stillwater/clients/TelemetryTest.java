package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidRequestException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Client telemetry (KIP-714) with the Java client on a three-node cluster with it enabled: a
 * client-metrics subscription made through the Admin client (kept in the cluster metadata, so
 * every broker asks its clients the same) makes a producer push its metrics, which a broker
 * shows on its metrics endpoint under the producer's client instance id. Volume: 2,000 records
 * of 100 bytes over a few seconds.
 */
@ExtendWith(Harness.class)
class TelemetryTest {
    @RegisterExtension
    static final Brokers brokers = Brokers.three("client_telemetry_enabled=true");

    static final ConfigResource SUBSCRIPTION = new ConfigResource(ConfigResource.Type.CLIENT_METRICS, "producers");

    static String scrape(Broker b) throws IOException {
        try (InputStream in = URI.create("http://127.0.0.1:" + b.metricsPort + "/metrics").toURL().openStream()) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    static long counter(String text, String name) {
        Matcher m = Pattern.compile("(?m)^" + Pattern.quote(name) + " (\\d+)").matcher(text);
        return m.find() ? Long.parseLong(m.group(1)) : -1;
    }

    static void alter(ConfigResource r, Collection<AlterConfigOp> ops) throws Exception {
        brokers.admin.incrementalAlterConfigs(Map.of(r, ops)).all().get();
    }

    static AlterConfigOp set(String key, String value) {
        return new AlterConfigOp(new ConfigEntry(key, value), AlterConfigOp.OpType.SET);
    }

    static AlterConfigOp delete(String key) {
        return new AlterConfigOp(new ConfigEntry(key, ""), AlterConfigOp.OpType.DELETE);
    }

    @Test
    void aSubscriptionMakesAProducerPushItsMetricsToTheBrokersEndpoint() throws Exception {
        // Refused as Kafka refuses them.
        ConfigResource bad = new ConfigResource(ConfigResource.Type.CLIENT_METRICS, "bad");
        assertInstanceOf(InvalidRequestException.class,
                AdminTest.failure(() -> alter(bad, List.of(set("interval.ms", "10")))));
        assertInstanceOf(InvalidConfigurationException.class,
                AdminTest.failure(() -> alter(bad, List.of(set("match", "hostname=x")))));

        alter(SUBSCRIPTION, List.of(
                set("metrics", "org.apache.kafka.producer."),
                set("interval.ms", "1000"),
                set("match", "client_software_name=apache-kafka-java")));
        Config described = brokers.admin.describeConfigs(List.of(SUBSCRIPTION)).all().get().get(SUBSCRIPTION);
        assertEquals("1000", described.get("interval.ms").value());
        assertEquals("org.apache.kafka.producer.", described.get("metrics").value());

        Clients.createTopic(brokers.admin, "telemetry", 3, 3, Map.of());
        Uuid instance;
        String pattern;
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.bootstrap(),
                Map.of("enable.metrics.push", "true", "client.id", "telemetry-producer"))) {
            byte[] value = new byte[100];
            for (int i = 0; i < 2_000; i++) {
                producer.send(new ProducerRecord<>("telemetry", value));
            }
            producer.flush();
            instance = producer.clientInstanceId(Duration.ofSeconds(30));
            pattern = "(?m)^stillwater_client_org_apache_kafka_producer_\\w+\\{[^}]*client_instance_id=\""
                    + Pattern.quote(instance.toString()) + "\"[^}]*\\} \\S+$";
            // Its pushes (every second) reach one of the brokers.
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            String seen = null;
            while (seen == null && System.nanoTime() < deadline) {
                for (Broker b : brokers.cluster.nodes) {
                    String text = scrape(b);
                    Matcher m = Pattern.compile(pattern).matcher(text);
                    if (m.find()) {
                        seen = m.group();
                    }
                }
                Thread.sleep(500);
            }
            assertTrue(seen != null, "no pushed producer metric of " + instance + " on any broker");
            assertTrue(seen.contains("client_software_name=\"apache-kafka-java\""), seen);
            assertTrue(seen.contains("client_id=\"telemetry-producer\""), seen);
            // A metric the subscription did not ask for is not pushed.
            for (Broker b : brokers.cluster.nodes) {
                assertTrue(!scrape(b).contains("stillwater_client_org_apache_kafka_consumer_"), b.name);
            }
        }
        // The producer closed (its last push says so): no push of it was refused anywhere.
        long pushes = 0;
        for (Broker b : brokers.cluster.nodes) {
            String text = scrape(b);
            pushes += counter(text, "stillwater_client_telemetry_pushes_total");
            assertEquals(0, counter(text, "stillwater_client_telemetry_refused_total"), b.name);
            assertEquals(0, counter(text, "stillwater_client_telemetry_unknown_subscription_total"), b.name);
        }
        assertTrue(pushes >= 1, "pushes counted: " + pushes);

        // Deleting every config removes the subscription: described at its defaults, as Kafka.
        alter(SUBSCRIPTION, List.of(delete("metrics"), delete("interval.ms"), delete("match")));
        Config gone = brokers.admin.describeConfigs(List.of(SUBSCRIPTION)).all().get().get(SUBSCRIPTION);
        assertEquals("300000", gone.get("interval.ms").value(), gone.toString());
        for (ConfigEntry e : gone.entries()) {
            assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, e.source(), e.toString());
        }
    }
}
