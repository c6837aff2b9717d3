package dev.stillwater.clients;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A CA of the test and certificates it signs, made the way Java users make theirs: PEM files by
 * {@code openssl} for the broker, PKCS12 key and trust stores for the clients (the CA imported
 * with {@code keytool}).
 */
final class Certs {
    static final String PASSWORD = "changeit";
    final Path dir;
    final Path ca;
    final Path caKey;
    /** A PKCS12 trust store holding the CA. */
    final Path truststore;

    Certs(Path dir) throws IOException, InterruptedException {
        this.dir = dir;
        Files.createDirectories(dir);
        this.ca = dir.resolve("ca.pem");
        this.caKey = dir.resolve("ca-key.pem");
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-days", "2", "-subj", "/CN=stillwater-test-ca", "-keyout", caKey.toString(), "-out", ca.toString(),
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        this.truststore = dir.resolve("truststore.p12");
        run("keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", ca.toString(), "-keystore",
                truststore.toString(), "-storetype", "PKCS12", "-storepass", PASSWORD);
    }

    /** A certificate (PEM) and its key (PEM) signed by the CA; returns {cert, key}. */
    Path[] issue(String name, String subject) throws IOException, InterruptedException {
        Path key = dir.resolve(name + "-key.pem");
        Path csr = dir.resolve(name + ".csr");
        Path cert = dir.resolve(name + ".pem");
        Path ext = dir.resolve(name + ".ext");
        Files.writeString(ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                + "extendedKeyUsage=serverAuth,clientAuth\n", StandardCharsets.UTF_8);
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subject,
                "-keyout", key.toString(), "-out", csr.toString());
        run("openssl", "x509", "-req", "-in", csr.toString(), "-CA", ca.toString(), "-CAkey", caKey.toString(),
                "-CAcreateserial", "-days", "2", "-extfile", ext.toString(), "-out", cert.toString());
        return new Path[] {cert, key};
    }

    /** A PKCS12 key store with a certificate the CA signed for {@code subject}. */
    Path keystore(String name, String subject) throws IOException, InterruptedException {
        Path[] pair = issue(name, subject);
        Path store = dir.resolve(name + ".p12");
        run("openssl", "pkcs12", "-export", "-in", pair[0].toString(), "-inkey", pair[1].toString(),
                "-certfile", ca.toString(), "-name", name, "-out", store.toString(), "-passout", "pass:" + PASSWORD);
        return store;
    }

    private void run(String... command) throws IOException, InterruptedException {
        Path out = dir.resolve("commands.log");
        ProcessBuilder builder = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(out.toFile()));
        int code = builder.start().waitFor();
        if (code != 0) {
            List<String> lines = new ArrayList<>(Files.readAllLines(out, StandardCharsets.UTF_8));
            throw new IOException(String.join(" ", command) + " exited with " + code + ":\n"
                    + String.join("\n", lines.subList(Math.max(0, lines.size() - 20), lines.size())));
        }
    }
}
