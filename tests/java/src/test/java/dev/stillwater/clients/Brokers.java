package dev.stillwater.clients;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.stream.Stream;

import org.apache.kafka.clients.admin.Admin;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * The brokers a test class shares, started before its first test and stopped after its last
 * (registered with {@code @RegisterExtension static final Brokers brokers = Brokers.one()} or
 * {@code Brokers.three()}), with an Admin client of them; their data lives in a folder of its
 * own, deleted afterwards.
 */
final class Brokers implements BeforeAllCallback, AfterAllCallback {
    private final int size;
    private final String[] settings;
    private Path dir;
    /** The single broker ({@link #one}) or the first node of the cluster. */
    Broker broker;
    /** The cluster ({@link #three}), or null. */
    Cluster cluster;
    Admin admin;

    private Brokers(int size, String... settings) {
        this.size = size;
        this.settings = settings;
    }

    static Brokers one(String... settings) {
        return new Brokers(1, settings);
    }

    static Brokers three(String... settings) {
        return new Brokers(3, settings);
    }

    String bootstrap() {
        return cluster != null ? cluster.bootstrap() : broker.bootstrap();
    }

    @Override
    public void beforeAll(ExtensionContext context) throws Exception {
        dir = Files.createTempDirectory("stillwater-" + context.getDisplayName() + "-");
        if (size == 1) {
            broker = new Broker(dir.resolve("broker"), "broker", 1);
            for (String s : settings) {
                broker.set(s);
            }
            broker.startReady();
            admin = Clients.admin(broker.bootstrap());
        } else {
            cluster = new Cluster(dir.resolve("cluster"), size, settings).start();
            broker = cluster.node(1);
            admin = Clients.admin(cluster.bootstrap());
            cluster.awaitBrokers(admin, size, Duration.ofSeconds(60));
        }
    }

    @Override
    public void afterAll(ExtensionContext context) throws Exception {
        if (admin != null) {
            admin.close();
        }
        if (cluster != null) {
            cluster.close();
        } else if (broker != null) {
            broker.close();
        }
        try (Stream<Path> files = Files.walk(dir)) {
            files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }
}
