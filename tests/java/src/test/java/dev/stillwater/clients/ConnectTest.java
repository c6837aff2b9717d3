package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Kafka Connect in distributed mode against three brokers: two workers (each its own JVM, as
 * {@code connect-distributed.sh} runs them, at {@code connect.version}: 4.3.1, the newest whose
 * FileStream connectors are served here, or 3.9.1) keep their configs, offsets and statuses in compacted
 * topics of the broker; the FileStream source and sink connectors move a file through a topic
 * unchanged, and a worker restarted in the middle resumes from its stored offsets.
 */
@ExtendWith(Harness.class)
class ConnectTest {
    @TempDir
    static Path dir;
    @RegisterExtension
    static final Brokers brokers = Brokers.three();
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    /** The worker's class path: connect-worker/pom.xml's dependencies at {@code connect.version}. */
    static String workerClasspath;

    @BeforeAll
    static void start() throws Exception {
        workerClasspath = workerClasspath();
    }

    static String workerClasspath() throws IOException, InterruptedException {
        Path out = Path.of(System.getProperty("connect.worker.classpath", dir.resolve("worker.classpath").toString()));
        List<String> mvn = new ArrayList<>(List.of("mvn", "-B", "-ntp", "-q",
                "-f", System.getProperty("connect.worker.pom", "connect-worker/pom.xml"),
                "dependency:build-classpath", "-Dmdep.outputFile=" + out,
                "-Dconnect.version=" + System.getProperty("connect.version", "4.3.1")));
        String repo = System.getProperty("maven.repo.local");
        if (repo != null) {
            mvn.add("-Dmaven.repo.local=" + repo);
        }
        Path log = dir.resolve("worker-classpath.log");
        Process p = new ProcessBuilder(mvn).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        if (p.waitFor() != 0) {
            throw new AssertionError("the Connect worker's class path could not be resolved: " + String.join(" ", mvn)
                    + "\n" + Files.readString(log, StandardCharsets.UTF_8));
        }
        return Files.readString(out, StandardCharsets.UTF_8).trim();
    }

    /** One Connect worker process of the group {@code connect-cluster}. */
    static final class Worker implements AutoCloseable {
        final String name;
        final int port = Ports.free();
        final Path config;
        final Path log;
        Process process;

        Worker(String name) throws IOException {
            this.name = name;
            this.config = dir.resolve(name + ".properties");
            this.log = dir.resolve(name + ".log");
            Files.writeString(config, String.join("\n",
                    "bootstrap.servers=" + brokers.cluster.bootstrap(),
                    "group.id=connect-cluster",
                    "key.converter=org.apache.kafka.connect.storage.StringConverter",
                    "value.converter=org.apache.kafka.connect.storage.StringConverter",
                    "config.storage.topic=connect-configs",
                    "offset.storage.topic=connect-offsets",
                    "status.storage.topic=connect-status",
                    "config.storage.replication.factor=3",
                    "offset.storage.replication.factor=3",
                    "status.storage.replication.factor=3",
                    "offset.flush.interval.ms=1000",
                    // A departed worker's tasks move after 5 s, not Connect's default 5 min.
                    "scheduled.rebalance.max.delay.ms=5000",
                    "listeners=http://127.0.0.1:" + port) + "\n", StandardCharsets.UTF_8);
        }

        Worker start() throws IOException, InterruptedException {
            String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
            process = new ProcessBuilder(java, "-Xmx256m", "-cp", workerClasspath,
                    "org.apache.kafka.connect.cli.ConnectDistributed", config.toString())
                    .redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .start();
            long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
            while (System.nanoTime() < deadline) {
                if (!process.isAlive()) {
                    throw new AssertionError(name + " exited with " + process.exitValue() + "\n" + logTail());
                }
                try {
                    if (get("/connectors").statusCode() == 200) {
                        return this;
                    }
                } catch (IOException notYet) {
                    // not listening yet
                }
                Thread.sleep(250);
            }
            throw new AssertionError(name + " did not serve its REST API within 90 s\n" + logTail());
        }

        HttpResponse<String> get(String path) throws IOException, InterruptedException {
            return HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                    .timeout(Duration.ofSeconds(10)).GET().build(), HttpResponse.BodyHandlers.ofString());
        }

        /** Creates a connector, asked again while the group rebalances (409) or its leader is not known yet. */
        void create(String json) throws IOException, InterruptedException {
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            HttpResponse<String> response = null;
            while (System.nanoTime() < deadline) {
                response = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/connectors"))
                        .timeout(Duration.ofSeconds(30)).header("Content-Type", "application/json")
                        .POST(HttpRequest.BodyPublishers.ofString(json)).build(),
                        HttpResponse.BodyHandlers.ofString());
                if (response.statusCode() == 201) {
                    return;
                }
                Thread.sleep(500);
            }
            throw new AssertionError("connector not created: " + response.statusCode() + " " + response.body()
                    + "\n" + logTail());
        }

        /** SIGTERM: the worker stops its tasks, flushes their offsets and leaves the group. */
        void stop() throws InterruptedException {
            if (process != null && process.isAlive()) {
                process.destroy();
                if (!process.waitFor(60, TimeUnit.SECONDS)) {
                    process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
                    throw new AssertionError(name + " did not exit within 60 s of SIGTERM\n" + logTail());
                }
            }
        }

        String logTail() {
            try {
                List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
                List<String> errors = lines.stream().filter(l -> l.contains("ERROR") || l.contains("Exception"))
                        .limit(30).toList();
                return "----- " + name + " log, its first 30 errors -----\n" + String.join("\n", errors)
                        + "\n----- and its last 40 lines -----\n"
                        + String.join("\n", lines.subList(Math.max(0, lines.size() - 40), lines.size()));
            } catch (IOException e) {
                return "----- " + name + " log unreadable: " + e;
            }
        }

        @Override
        public void close() throws InterruptedException {
            if (process != null && process.isAlive()) {
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    static List<String> lines(int from, int count) {
        List<String> lines = new ArrayList<>();
        for (int i = from; i < from + count; i++) {
            lines.add("line " + i + " " + "x".repeat(i % 100) + " end");
        }
        return lines;
    }

    static List<String> awaitLines(Path file, int count, Duration timeout, Worker... workers) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        List<String> got = List.of();
        while (System.nanoTime() < deadline) {
            got = Files.exists(file) ? Files.readAllLines(file, StandardCharsets.UTF_8) : List.of();
            if (got.size() >= count) {
                return got;
            }
            Thread.sleep(250);
        }
        StringBuilder logs = new StringBuilder();
        for (Worker w : workers) {
            logs.append(w.logTail()).append('\n');
        }
        throw new AssertionError(file + " has " + got.size() + " of " + count + " lines\n" + logs);
    }

    /**
     * 20,000 lines (~1.4 MB): the first half moved by the source and sink connectors on two
     * workers; one worker stopped and started again while the second half is appended; the
     * sink's file ends equal to the source's, line for line.
     */
    @Test
    void fileStreamConnectorsMoveAFileUnchangedAcrossAWorkerRestart() throws Exception {
        Path in = dir.resolve("in.txt");
        Path out = dir.resolve("out.txt");
        List<String> first = lines(0, 10_000);
        List<String> second = lines(10_000, 10_000);
        Files.write(in, first, StandardCharsets.UTF_8);
        Clients.createTopic(brokers.admin, "file-lines", 1, 3, Map.of());
        try (Worker a = new Worker("worker-a").start(); Worker b = new Worker("worker-b").start()) {
            a.create("{\"name\": \"file-source\", \"config\": {"
                    + "\"connector.class\": \"org.apache.kafka.connect.file.FileStreamSourceConnector\","
                    + "\"tasks.max\": \"1\", \"file\": \"" + in + "\", \"topic\": \"file-lines\"}}");
            b.create("{\"name\": \"file-sink\", \"config\": {"
                    + "\"connector.class\": \"org.apache.kafka.connect.file.FileStreamSinkConnector\","
                    + "\"tasks.max\": \"1\", \"file\": \"" + out + "\", \"topics\": \"file-lines\"}}");
            awaitLines(out, first.size(), Duration.ofSeconds(120), a, b);

            // The worker running the source's task is the one restarted.
            String before = a.get("/connectors/file-source/status").body();
            java.util.regex.Matcher task = java.util.regex.Pattern
                    .compile("\"tasks\":\\[\\{[^}]*\"worker_id\":\"127\\.0\\.0\\.1:(\\d+)\"").matcher(before);
            assertTrue(task.find(), before);
            Worker restarted = Integer.parseInt(task.group(1)) == b.port ? b : a;
            System.out.println("restarting " + restarted.name + ", which runs the source's task: " + before);
            restarted.stop();
            Files.write(in, second, StandardCharsets.UTF_8, StandardOpenOption.APPEND);
            Thread.sleep(2_000);
            restarted.start();
            List<String> all = new ArrayList<>(first);
            all.addAll(second);
            List<String> got = awaitLines(out, all.size(), Duration.ofSeconds(120), a, b);
            Thread.sleep(3_000);
            got = Files.readAllLines(out, StandardCharsets.UTF_8);
            assertEquals(all.size(), got.size(), "lines in the sink's file");
            assertTrue(all.equals(got), "the sink's file differs from the source's");
            // After the restart the group rebalances and the connectors settle on their workers.
            for (String connector : List.of("file-source", "file-sink")) {
                long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
                String status = "";
                while (System.nanoTime() < deadline) {
                    status = b.get("/connectors/" + connector + "/status").body();
                    if (!status.contains("UNASSIGNED") && !status.contains("FAILED")) {
                        break;
                    }
                    Thread.sleep(500);
                }
                System.out.println(connector + " after the restart: " + status);
                assertTrue(status.contains("\"state\":\"RUNNING\"") && !status.contains("UNASSIGNED")
                        && !status.contains("FAILED"), connector + ": " + status + "\n" + a.logTail() + "\n" + b.logTail());
            }
        }
        for (String topic : List.of("connect-configs", "connect-offsets", "connect-status")) {
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config config = brokers.admin.describeConfigs(List.of(resource)).all().get().get(resource);
            assertEquals("compact", config.get("cleanup.policy").value(), topic);
        }
    }
}
