package dev.stillwater.clients;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.File;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * One process of the real broker binary ({@code STILLWATER_BROKER_BIN}), on its own loopback
 * ports and data directory, restartable on both. Its stdout and stderr go to a file whose tail
 * {@link #logTail()} gives for a failing test's message.
 */
final class Broker implements AutoCloseable {
    static final String DEFAULT_BIN = "/root/.cache/stillwater-target/debug/broker";

    final String name;
    final int nodeId;
    final int port;
    final int metricsPort;
    final Path workDir;
    final Path dataDir;
    final Path log;
    /** Extra command-line arguments ({@code --set key=value}, {@code --add-scram …}). */
    final List<String> args = new ArrayList<>();
    /** Whether the first listener is plaintext, so that readiness can be asked with ApiVersions. */
    boolean plaintext = true;
    boolean advertise = true;
    private Process process;
    private boolean expectedExit;

    Broker(Path workDir, String name, int nodeId) {
        this.name = name;
        this.nodeId = nodeId;
        this.workDir = workDir;
        this.dataDir = workDir.resolve("data");
        this.log = workDir.resolve(name + "-stderr.log");
        this.port = Ports.free();
        this.metricsPort = Ports.free();
        Harness.register(this);
    }

    static String binary() {
        String bin = System.getenv("STILLWATER_BROKER_BIN");
        return bin == null || bin.isEmpty() ? DEFAULT_BIN : bin;
    }

    String bootstrap() {
        return "127.0.0.1:" + port;
    }

    Broker set(String keyValue) {
        args.add("--set");
        args.add(keyValue);
        return this;
    }

    List<String> command() {
        List<String> cmd = new ArrayList<>(List.of(
                binary(),
                "--listen", bootstrap(),
                "--data-dir", dataDir.toString(),
                "--metrics-listen", "127.0.0.1:" + metricsPort,
                "--node-id", Integer.toString(nodeId)));
        if (advertise) {
            cmd.add("--advertised-listener");
            cmd.add(bootstrap());
        }
        cmd.addAll(args);
        return cmd;
    }

    Broker start() throws IOException, InterruptedException {
        if (alive()) {
            throw new IllegalStateException(name + " is already running");
        }
        File bin = new File(binary());
        if (!bin.canExecute()) {
            throw new IllegalStateException("broker binary " + bin + " not found or not executable:"
                    + " build it (cargo build -p broker --bin broker) or set STILLWATER_BROKER_BIN");
        }
        Files.createDirectories(workDir);
        Files.writeString(log, "\n===== test harness: start: " + String.join(" ", command()) + "\n",
                StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.CREATE,
                java.nio.file.StandardOpenOption.APPEND);
        ProcessBuilder builder = new ProcessBuilder(command())
                .directory(workDir.toFile())
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        // The broker refuses STILLWATER_* variables it does not know: the harness's own stay out.
        builder.environment().remove("STILLWATER_BROKER_BIN");
        builder.environment().putIfAbsent("RUST_BACKTRACE", "1");
        expectedExit = false;
        process = builder.start();
        return this;
    }

    /** Waits until the broker accepts connections (and answers ApiVersions on a plaintext port). */
    Broker awaitReady(Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        String last = "never tried";
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                throw new AssertionError(name + " exited with " + process.exitValue()
                        + " during start-up\n" + logTail());
            }
            try {
                if (ready()) {
                    return this;
                }
                last = "ApiVersions answered with an error";
            } catch (IOException e) {
                last = e.toString();
            }
            Thread.sleep(50);
        }
        throw new AssertionError(name + " not ready on " + bootstrap() + " after " + timeout
                + ": " + last + "\n" + logTail());
    }

    private boolean ready() throws IOException {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress("127.0.0.1", port), 2_000);
            socket.setSoTimeout(2_000);
            if (!plaintext) {
                return true;
            }
            // ApiVersions v0: api key 18, version 0, correlation id 1, client id "ready".
            byte[] clientId = "ready".getBytes(StandardCharsets.UTF_8);
            DataOutputStream out = new DataOutputStream(socket.getOutputStream());
            out.writeInt(2 + 2 + 4 + 2 + clientId.length);
            out.writeShort(18);
            out.writeShort(0);
            out.writeInt(1);
            out.writeShort(clientId.length);
            out.write(clientId);
            out.flush();
            DataInputStream in = new DataInputStream(socket.getInputStream());
            int size = in.readInt();
            if (size < 6) {
                return false;
            }
            int correlation = in.readInt();
            short error = in.readShort();
            return correlation == 1 && error == 0;
        }
    }

    Broker startReady() throws IOException, InterruptedException {
        return start().awaitReady(Duration.ofSeconds(30));
    }

    boolean alive() {
        return process != null && process.isAlive();
    }

    long pid() {
        return process.pid();
    }

    /** SIGTERM, and the exit code; SIGKILL and fail if it does not exit within 20 s. */
    int stop() throws InterruptedException {
        if (!alive()) {
            return process == null ? 0 : process.exitValue();
        }
        expectedExit = true;
        process.destroy();
        if (!process.waitFor(20, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            throw new AssertionError(name + " did not exit within 20 s of SIGTERM\n" + logTail());
        }
        return process.exitValue();
    }

    /** SIGKILL: a crash, nothing flushed. */
    void kill() throws InterruptedException {
        if (!alive()) {
            return;
        }
        expectedExit = true;
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
    }

    /** SIGSTOP / SIGCONT: a process that is there but does not answer. */
    void signal(String signal) throws IOException, InterruptedException {
        Process kill = new ProcessBuilder("kill", "-" + signal, Long.toString(pid())).inheritIO().start();
        if (kill.waitFor() != 0) {
            throw new IOException("kill -" + signal + " " + pid() + " failed");
        }
    }

    boolean diedUnexpectedly() {
        return process != null && !process.isAlive() && !expectedExit;
    }

    String logTail() {
        try {
            List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
            int from = Math.max(0, lines.size() - 120);
            return "----- " + name + " log (" + log + "), last " + (lines.size() - from) + " lines -----\n"
                    + String.join("\n", lines.subList(from, lines.size()));
        } catch (IOException e) {
            return "----- " + name + " log unreadable: " + e;
        }
    }

    @Override
    public void close() throws InterruptedException {
        if (alive()) {
            try {
                stop();
            } catch (AssertionError ignored) {
                // killed by stop() already; the test's own outcome matters more
            }
        }
    }
}
