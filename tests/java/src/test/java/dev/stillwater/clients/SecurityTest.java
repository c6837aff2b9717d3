package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.SslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * SASL_SSL with SCRAM-SHA-512, and mutual TLS, configured the way Java users configure them: a
 * JAAS line, PKCS12 key and trust stores, the broker's name checked against its certificate;
 * with the authorizer on and ACLs made through the Admin client.
 */
@ExtendWith(Harness.class)
class SecurityTest {
    static final String ADMIN_JAAS = jaas("admin", "admin-secret");

    @TempDir
    static Path dir;
    static Certs certs;

    @BeforeAll
    static void makeCerts() throws Exception {
        certs = new Certs(dir.resolve("certs"));
    }

    static String jaas(String user, String password) {
        return "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"" + user
                + "\" password=\"" + password + "\";";
    }

    static Map<String, Object> trust() {
        return Map.of("ssl.truststore.location", certs.truststore.toString(),
                "ssl.truststore.type", "PKCS12", "ssl.truststore.password", Certs.PASSWORD);
    }

    static Map<String, Object> sasl(String jaas) {
        Map<String, Object> conf = new HashMap<>(trust());
        conf.put("security.protocol", "SASL_SSL");
        conf.put("sasl.mechanism", "SCRAM-SHA-512");
        conf.put("sasl.jaas.config", jaas);
        return conf;
    }

    static Broker secureBroker(String name, String protocol, String... settings) throws Exception {
        Path[] pair = certs.issue(name, "/CN=localhost");
        Broker b = new Broker(dir.resolve(name), name, 1);
        b.plaintext = false;
        b.advertise = false;
        b.set("listeners=" + protocol + "://127.0.0.1:" + b.port)
                .set("advertised_listeners=" + protocol + "://localhost:" + b.port)
                .set("ssl_certificate_location=" + pair[0])
                .set("ssl_key_location=" + pair[1])
                .set("ssl_ca_location=" + certs.ca)
                .set("authorizer_enabled=true");
        for (String s : settings) {
            b.set(s);
        }
        return b;
    }

    static String bootstrap(Broker b) {
        return "localhost:" + b.port;
    }

    static void allow(Admin admin, String principal, ResourceType type, String name, AclOperation... ops)
            throws Exception {
        List<AclBinding> acls = new ArrayList<>();
        for (AclOperation op : ops) {
            acls.add(new AclBinding(new ResourcePattern(type, name, PatternType.LITERAL),
                    new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW)));
        }
        admin.createAcls(acls).all().get();
    }

    /** {@code count} records of {@code size} bytes produced, then read back by a group. */
    static void produceAndConsume(String bootstrap, Map<String, Object> conf, String topic, String group,
                                  int count, int size) throws Exception {
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(bootstrap, conf)) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                byte[] value = new byte[size];
                byte[] index = Integer.toString(i).getBytes(StandardCharsets.UTF_8);
                System.arraycopy(index, 0, value, 0, index.length);
                acks.add(producer.send(new ProducerRecord<>(topic, value)));
            }
            for (Future<RecordMetadata> ack : acks) {
                ack.get();
            }
        }
        Map<String, Object> consumerConf = new HashMap<>(conf);
        consumerConf.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(bootstrap, consumerConf)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            while (seen.size() < count && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    assertEquals(size, r.value().length);
                    seen.add(new String(r.value(), StandardCharsets.UTF_8).trim());
                }
            }
            consumer.commitSync();
        }
        assertEquals(count, seen.size(), "distinct records the group read");
    }

    /**
     * SASL_SSL with SCRAM-SHA-512: the admin (a super user made at start) makes a user and its
     * ACLs; the user produces and consumes 2,000 records of 1 KiB in a group; a wrong password
     * is refused, and a user without ACLs is refused the topic.
     */
    @Test
    void scramOverTlsWithAclsServesAUserMadeThroughTheAdminClient() throws Exception {
        try (Broker broker = secureBroker("sasl-ssl", "SASL_SSL",
                "sasl_enabled_mechanisms=SCRAM-SHA-512", "super_users=User:admin")) {
            broker.args.addAll(List.of("--add-scram", "SCRAM-SHA-512=[name=admin,password=admin-secret]"));
            broker.startReady();
            String bootstrap = bootstrap(broker);
            try (Admin admin = Clients.admin(bootstrap, sasl(ADMIN_JAAS))) {
                admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("app",
                        new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), "app-secret"))).all().get();
                admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("nobody",
                        new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), "nobody-secret"))).all().get();
                Clients.createTopic(admin, "secured", 3);
                allow(admin, "User:app", ResourceType.TOPIC, "secured", AclOperation.WRITE, AclOperation.READ);
                allow(admin, "User:app", ResourceType.GROUP, "secured-group", AclOperation.READ);
                // Idempotent producing (the default) needs IDEMPOTENT_WRITE on the cluster, or WRITE on a topic.
            }
            produceAndConsume(bootstrap, sasl(jaas("app", "app-secret")), "secured", "secured-group", 2_000, 1024);

            try (KafkaProducer<byte[], byte[]> wrong = Clients.producer(bootstrap,
                    withShortTimeouts(sasl(jaas("app", "not-the-password"))))) {
                ExecutionException e = assertThrows(ExecutionException.class,
                        () -> wrong.send(new ProducerRecord<>("secured", new byte[1])).get());
                assertInstanceOf(SaslAuthenticationException.class, e.getCause(), e.toString());
            } catch (SaslAuthenticationException refusedEarlier) {
                // send() itself may fail when its metadata request is refused first
            }
            try (KafkaProducer<byte[], byte[]> nobody = Clients.producer(bootstrap,
                    withShortTimeouts(sasl(jaas("nobody", "nobody-secret"))))) {
                ExecutionException e = assertThrows(ExecutionException.class,
                        () -> nobody.send(new ProducerRecord<>("secured", new byte[1])).get());
                assertTrue(e.getCause() instanceof TopicAuthorizationException
                                || e.getCause() instanceof org.apache.kafka.common.errors.ClusterAuthorizationException,
                        e.toString());
            } catch (TopicAuthorizationException refusedEarlier) {
                // as above
            }
        }
    }

    /**
     * Mutual TLS: the client's certificate subject is its principal ({@code User:CN=alice,OU=eng}),
     * which ACLs allow to produce and consume 1,000 records of 100 B; a client without a
     * certificate is refused in the handshake.
     */
    @Test
    void mutualTlsNamesTheClientByItsCertificate() throws Exception {
        try (Broker broker = secureBroker("mtls", "SSL", "ssl_client_auth=required",
                "super_users=User:CN=admin")) {
            broker.startReady();
            String bootstrap = bootstrap(broker);
            Map<String, Object> adminConf = new HashMap<>(trust());
            adminConf.put("security.protocol", "SSL");
            adminConf.put("ssl.keystore.location", certs.keystore("admin", "/CN=admin").toString());
            adminConf.put("ssl.keystore.type", "PKCS12");
            adminConf.put("ssl.keystore.password", Certs.PASSWORD);
            Map<String, Object> aliceConf = new HashMap<>(adminConf);
            aliceConf.put("ssl.keystore.location", certs.keystore("alice", "/O=corp/OU=eng/CN=alice").toString());
            String alice = "User:CN=alice,OU=eng,O=corp";
            try (Admin admin = Clients.admin(bootstrap, adminConf)) {
                Clients.createTopic(admin, "mtls", 2);
                allow(admin, alice, ResourceType.TOPIC, "mtls", AclOperation.WRITE, AclOperation.READ);
                allow(admin, alice, ResourceType.GROUP, "mtls-group", AclOperation.READ);
            }
            produceAndConsume(bootstrap, aliceConf, "mtls", "mtls-group", 1_000, 100);

            Map<String, Object> noCert = new HashMap<>(trust());
            noCert.put("security.protocol", "SSL");
            try (KafkaProducer<byte[], byte[]> anonymous = Clients.producer(bootstrap, withShortTimeouts(noCert))) {
                ExecutionException e = assertThrows(ExecutionException.class,
                        () -> anonymous.send(new ProducerRecord<>("mtls", new byte[1])).get());
                assertInstanceOf(SslAuthenticationException.class, e.getCause(), e.toString());
            } catch (SslAuthenticationException refusedEarlier) {
                // as above
            }
        }
    }

    static Map<String, Object> withShortTimeouts(Map<String, Object> conf) {
        Map<String, Object> all = new HashMap<>(conf);
        all.put("max.block.ms", 10_000);
        all.put("delivery.timeout.ms", 10_000);
        all.put("request.timeout.ms", 5_000);
        return all;
    }
}
