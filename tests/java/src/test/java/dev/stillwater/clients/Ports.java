package dev.stillwater.clients;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Free loopback ports for the brokers of these tests, from 5000–9999: below the kernel's
 * ephemeral range (a broker restarted on its ports must find them free, and a port from that
 * range may meanwhile be the local end of some client's connection), and apart from the ranges
 * the project's other harnesses use (Python tests 20000–31999, twin runs 10000–14999,
 * benchmarks 15000–19999), so that they may run beside these.
 */
final class Ports {
    private static final int FIRST = 5_000;
    private static final int END = 10_000;
    private static final Set<Integer> TAKEN = new HashSet<>();

    private Ports() {}

    static synchronized int free() {
        ThreadLocalRandom random = ThreadLocalRandom.current();
        for (int attempt = 0; attempt < 10_000; attempt++) {
            int port = random.nextInt(FIRST, END);
            if (TAKEN.contains(port)) {
                continue;
            }
            try (ServerSocket socket = new ServerSocket()) {
                socket.setReuseAddress(false);
                socket.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), port));
            } catch (IOException inUse) {
                continue;
            }
            TAKEN.add(port);
            return port;
        }
        throw new IllegalStateException("no free loopback port in " + FIRST + "-" + END);
    }
}
