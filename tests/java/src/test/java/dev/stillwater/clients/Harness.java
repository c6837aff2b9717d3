package dev.stillwater.clients;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.TestWatcher;

/**
 * The brokers the tests started: a failing test prints the end of every live broker's log, and
 * a test after which a broker had exited without being stopped or killed by the test fails.
 */
final class Harness implements TestWatcher, AfterEachCallback {
    private static final List<Broker> BROKERS = new ArrayList<>();

    static synchronized Broker register(Broker broker) {
        BROKERS.add(broker);
        return broker;
    }

    private static synchronized List<Broker> all() {
        return new ArrayList<>(BROKERS);
    }

    @Override
    public void afterEach(ExtensionContext context) {
        for (Broker broker : all()) {
            if (broker.diedUnexpectedly()) {
                synchronized (Harness.class) {
                    BROKERS.remove(broker);
                }
                throw new AssertionError(broker.name + " died during the test\n" + broker.logTail());
            }
        }
    }

    @Override
    public void testFailed(ExtensionContext context, Throwable cause) {
        for (Broker broker : all()) {
            System.err.println(broker.logTail());
        }
    }

    @Override
    public void testSuccessful(ExtensionContext context) {}

    @Override
    public void testAborted(ExtensionContext context, Throwable cause) {}

    @Override
    public void testDisabled(ExtensionContext context, Optional<String> reason) {}
}
