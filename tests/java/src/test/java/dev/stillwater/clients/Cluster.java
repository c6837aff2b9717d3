package dev.stillwater.clients;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;

/** Brokers of one cluster ({@code cluster_peers}), each with its own id, ports and data. */
final class Cluster implements AutoCloseable {
    final List<Broker> nodes = new ArrayList<>();

    Cluster(Path dir, int size, String... settings) {
        for (int id = 1; id <= size; id++) {
            nodes.add(new Broker(dir.resolve("node" + id), "node" + id, id));
        }
        String peers = nodes.stream()
                .map(n -> n.nodeId + "@127.0.0.1:" + Ports.free())
                .collect(Collectors.joining(","));
        for (Broker node : nodes) {
            node.set("cluster_peers=" + peers);
            for (String setting : settings) {
                node.set(setting);
            }
        }
    }

    /** Every node at once: each waits for the others to elect the metadata's leader. */
    Cluster start() throws IOException, InterruptedException {
        for (Broker node : nodes) {
            node.start();
        }
        for (Broker node : nodes) {
            node.awaitReady(Duration.ofSeconds(60));
        }
        return this;
    }

    Broker node(int id) {
        return nodes.get(id - 1);
    }

    String bootstrap() {
        return nodes.stream().map(Broker::bootstrap).collect(Collectors.joining(","));
    }

    /** Waits until Metadata names {@code count} brokers. */
    void awaitBrokers(Admin admin, int count, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        Object last = null;
        while (System.nanoTime() < deadline) {
            try {
                var brokers = admin.describeCluster().nodes().get();
                last = brokers;
                if (brokers.size() == count) {
                    return;
                }
            } catch (Exception e) {
                last = e;
            }
            Thread.sleep(100);
        }
        throw new AssertionError("not " + count + " brokers in the cluster's metadata: " + last);
    }

    /** The live leader of a partition, asked until one is named (a fresh topic has none yet). */
    int leaderOf(Admin admin, String topic, int partition, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        Object last = null;
        while (System.nanoTime() < deadline) {
            try {
                TopicDescription description = admin.describeTopics(List.of(topic))
                        .allTopicNames().get().get(topic);
                TopicPartitionInfo info = description.partitions().get(partition);
                Node leader = info.leader();
                last = info;
                if (leader != null && !leader.isEmpty() && node(leader.id()).alive()) {
                    return leader.id();
                }
            } catch (Exception e) {
                last = e;
            }
            Thread.sleep(100);
        }
        throw new AssertionError("no live leader for " + topic + "-" + partition + ": " + last);
    }

    /** Waits until every partition of the topics has a live leader. */
    void awaitLeaders(Admin admin, Map<String, Integer> partitions, Duration timeout) throws InterruptedException {
        for (Map.Entry<String, Integer> topic : partitions.entrySet()) {
            for (int p = 0; p < topic.getValue(); p++) {
                leaderOf(admin, topic.getKey(), p, timeout);
            }
        }
    }

    @Override
    public void close() throws InterruptedException {
        for (Broker node : nodes) {
            node.close();
        }
    }
}
