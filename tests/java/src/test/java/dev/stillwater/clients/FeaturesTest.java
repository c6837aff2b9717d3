package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.FeatureUpdate;
import org.apache.kafka.clients.admin.UpdateFeaturesOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.errors.InvalidUpdateVersionException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Feature levels through the Admin client (what {@code kafka-features.sh} does): a level
 * finalized by {@code updateFeatures} is what {@code describeFeatures} then tells, a bad update
 * is refused whole, a validate-only one changes nothing; {@code group.version} lowered to 0
 * turns the KIP-848 consumer protocol off (a consumer using it is told so) until it is raised
 * again; and levels are kept over a restart. Data volume: none (a few admin requests).
 */
@ExtendWith(Harness.class)
class FeaturesTest {
    @RegisterExtension
    static final Brokers brokers = Brokers.one();

    static short finalized(Admin admin, String feature) throws Exception {
        FeatureMetadata m = admin.describeFeatures().featureMetadata().get();
        var level = m.finalizedFeatures().get(feature);
        return level == null ? 0 : level.maxVersionLevel();
    }

    static void update(Admin admin, String feature, int level, FeatureUpdate.UpgradeType type, boolean validateOnly)
            throws Exception {
        admin.updateFeatures(Map.of(feature, new FeatureUpdate((short) level, type)),
                new UpdateFeaturesOptions().validateOnly(validateOnly)).all().get();
    }

    @Test
    void levelsAreUpdatedDescribedKeptAndBadUpdatesRefused() throws Exception {
        Admin admin = brokers.admin;
        assertEquals(1, finalized(admin, "group.version"));
        long epochBefore = admin.describeFeatures().featureMetadata().get().finalizedFeaturesEpoch().orElse(-1L);

        Throwable tooHigh = AdminTest.failure(() -> update(admin, "group.version", 7,
                FeatureUpdate.UpgradeType.UPGRADE, false));
        assertInstanceOf(InvalidUpdateVersionException.class, tooHigh, tooHigh.toString());
        Throwable unknown = AdminTest.failure(() -> update(admin, "no.such.feature", 1,
                FeatureUpdate.UpgradeType.UPGRADE, false));
        assertInstanceOf(InvalidUpdateVersionException.class, unknown, unknown.toString());
        // The format level is never lowered.
        Throwable formats = AdminTest.failure(() -> update(admin, "stillwater.version", 0,
                FeatureUpdate.UpgradeType.UNSAFE_DOWNGRADE, false));
        assertInstanceOf(InvalidUpdateVersionException.class, formats, formats.toString());

        update(admin, "group.version", 0, FeatureUpdate.UpgradeType.SAFE_DOWNGRADE, true);
        assertEquals(1, finalized(admin, "group.version"), "validate-only changed the level");

        update(admin, "group.version", 0, FeatureUpdate.UpgradeType.SAFE_DOWNGRADE, false);
        try {
            FeatureMetadata m = admin.describeFeatures().featureMetadata().get();
            assertFalse(m.finalizedFeatures().containsKey("group.version"), m.toString());
            assertTrue(m.finalizedFeaturesEpoch().orElse(-1L) > epochBefore, m.toString());
            if (!Clients.version().startsWith("3.")) {
                // A KIP-848 consumer is told the cluster does not run its protocol.
                try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(brokers.broker.bootstrap(), Map.of(
                        ConsumerConfig.GROUP_ID_CONFIG, "features-kip848",
                        ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer"))) {
                    consumer.subscribe(List.of("features-topic"));
                    Throwable refused = null;
                    long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
                    while (refused == null && System.nanoTime() < deadline) {
                        try {
                            consumer.poll(Duration.ofMillis(200));
                        } catch (UnsupportedVersionException e) {
                            refused = e;
                        }
                    }
                    assertInstanceOf(UnsupportedVersionException.class, refused, "no refusal in 20 s");
                }
            }
            // Kept over a restart.
            brokers.broker.stop();
            brokers.broker.startReady();
            try (Admin again = Clients.admin(brokers.broker.bootstrap())) {
                assertEquals(0, finalized(again, "group.version"));
            }
        } finally {
            try (Admin again = Clients.admin(brokers.broker.bootstrap())) {
                update(again, "group.version", 1, FeatureUpdate.UpgradeType.UPGRADE, false);
                assertEquals(1, finalized(again, "group.version"));
            }
        }
    }
}
