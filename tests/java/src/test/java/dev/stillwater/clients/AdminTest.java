package dev.stillwater.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.SupportedVersionRange;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Java Admin client against one broker with the authorizer on (the plaintext listener's
 * {@code User:ANONYMOUS} a super user): topics, partitions, configs, records deletion, consumer
 * groups and their offsets, ACLs, SCRAM users, the cluster, log directories and producers.
 */
@ExtendWith(Harness.class)
class AdminTest {
    @TempDir
    static Path dir;
    @RegisterExtension
    static final Brokers brokers = Brokers.one("authorizer_enabled=true", "super_users=User:ANONYMOUS");

    static void produce(String topic, int partition, int count) throws Exception {
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(brokers.broker.bootstrap(), Map.of())) {
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(topic, partition, "k".getBytes(StandardCharsets.UTF_8),
                        ("v" + i).getBytes(StandardCharsets.UTF_8))).get();
            }
        }
    }

    interface Call {
        void run() throws Exception;
    }

    static Throwable failure(Call call) {
        try {
            call.run();
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (Exception e) {
            return e;
        }
        throw new AssertionError("the call succeeded");
    }

    /** Topics created (with configs, validate-only, refused twice), described, grown, altered, deleted. */
    @Test
    void topicsAreCreatedDescribedGrownReconfiguredAndDeleted() throws Exception {
        NewTopic topic = new NewTopic("admin-topic", 3, (short) 1)
                .configs(Map.of("retention.ms", "3600000", "cleanup.policy", "compact"));
        brokers.admin.createTopics(List.of(new NewTopic("validate-only", 2, (short) 1)),
                new CreateTopicsOptions().validateOnly(true)).all().get();
        assertFalse(brokers.admin.listTopics().names().get().contains("validate-only"), "a validate-only topic made");
        brokers.admin.createTopics(List.of(topic)).all().get();
        assertInstanceOf(TopicExistsException.class, failure(() -> brokers.admin.createTopics(List.of(topic)).all().get()));
        assertTrue(brokers.admin.listTopics().names().get().contains("admin-topic"));

        TopicDescription described = brokers.admin.describeTopics(List.of("admin-topic")).allTopicNames().get()
                .get("admin-topic");
        assertEquals(3, described.partitions().size());
        assertEquals(1, described.partitions().get(0).leader().id());

        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, "admin-topic");
        Config config = brokers.admin.describeConfigs(List.of(resource)).all().get().get(resource);
        assertEquals("3600000", config.get("retention.ms").value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, config.get("retention.ms").source());
        assertEquals("compact", config.get("cleanup.policy").value());

        brokers.admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("cleanup.policy", ""), AlterConfigOp.OpType.DELETE))))
                .all().get();
        config = brokers.admin.describeConfigs(List.of(resource)).all().get().get(resource);
        assertEquals("7200000", config.get("retention.ms").value());
        assertEquals("delete", config.get("cleanup.policy").value());
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, config.get("cleanup.policy").source());

        brokers.admin.createPartitions(Map.of("admin-topic", NewPartitions.increaseTo(6))).all().get();
        assertEquals(6, brokers.admin.describeTopics(List.of("admin-topic")).allTopicNames().get()
                .get("admin-topic").partitions().size());
        assertInstanceOf(InvalidPartitionsException.class, failure(() ->
                brokers.admin.createPartitions(Map.of("admin-topic", NewPartitions.increaseTo(4))).all().get()));

        brokers.admin.deleteTopics(List.of("admin-topic")).all().get();
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (brokers.admin.listTopics().names().get().contains("admin-topic") && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertFalse(brokers.admin.listTopics().names().get().contains("admin-topic"));
        assertInstanceOf(UnknownTopicOrPartitionException.class, failure(() ->
                brokers.admin.deleteTopics(List.of("admin-topic")).all().get()));
    }

    /** deleteRecords moves the log start offset; a consumer from the beginning starts there. */
    @Test
    void recordsAreDeletedBeforeAnOffset() throws Exception {
        Clients.createTopic(brokers.admin, "delete-records", 1);
        produce("delete-records", 0, 100);
        TopicPartition tp = new TopicPartition("delete-records", 0);
        long low = brokers.admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(40))).lowWatermarks()
                .get(tp).get().lowWatermark();
        assertEquals(40, low);
        assertEquals(40, brokers.admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset());
        assertEquals(100, brokers.admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().offset());
        var read = Clients.readAll(brokers.broker.bootstrap(), "delete-records", 60, java.time.Duration.ofSeconds(20));
        assertEquals(60, read.size());
        assertEquals(40, read.get(0).offset());
    }

    /** Groups listed, described, their offsets listed, altered and deleted, and the group deleted. */
    @Test
    void consumerGroupsAndTheirOffsetsAreListedAlteredAndDeleted() throws Exception {
        Clients.createTopic(brokers.admin, "group-admin", 2);
        produce("group-admin", 0, 10);
        produce("group-admin", 1, 10);
        TopicPartition p0 = new TopicPartition("group-admin", 0);
        TopicPartition p1 = new TopicPartition("group-admin", 1);
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(brokers.broker.bootstrap(),
                Map.of(ConsumerConfig.GROUP_ID_CONFIG, "admin-group"))) {
            c.assign(List.of(p0, p1));
            c.commitSync(Map.of(p0, new OffsetAndMetadata(7, "seven"), p1, new OffsetAndMetadata(3)));
        }
        Set<String> groups = brokers.admin.listConsumerGroups().all().get().stream()
                .map(g -> g.groupId()).collect(Collectors.toSet());
        assertTrue(groups.contains("admin-group"), groups.toString());
        ConsumerGroupDescription description = brokers.admin.describeConsumerGroups(List.of("admin-group"))
                .all().get().get("admin-group");
        assertTrue(description.members().isEmpty());
        // groupState() (4.x) and state() (3.x) differ by client version; their string does not.
        assertTrue(description.toString().toLowerCase().matches("(?s).*state=empty.*"), description.toString());

        Map<TopicPartition, OffsetAndMetadata> offsets = brokers.admin.listConsumerGroupOffsets("admin-group")
                .partitionsToOffsetAndMetadata().get();
        assertEquals(7, offsets.get(p0).offset());
        assertEquals("seven", offsets.get(p0).metadata());
        assertEquals(3, offsets.get(p1).offset());

        brokers.admin.alterConsumerGroupOffsets("admin-group", Map.of(p1, new OffsetAndMetadata(9))).all().get();
        brokers.admin.deleteConsumerGroupOffsets("admin-group", Set.of(p0)).all().get();
        offsets = brokers.admin.listConsumerGroupOffsets("admin-group").partitionsToOffsetAndMetadata().get();
        assertEquals(Set.of(p1), offsets.keySet());
        assertEquals(9, offsets.get(p1).offset());

        brokers.admin.deleteConsumerGroups(List.of("admin-group")).all().get();
        groups = brokers.admin.listConsumerGroups().all().get().stream().map(g -> g.groupId()).collect(Collectors.toSet());
        assertFalse(groups.contains("admin-group"), groups.toString());
    }

    /** ACLs created, described by filters, refused when malformed, and deleted. */
    @Test
    void aclsAreCreatedDescribedAndDeleted() throws Exception {
        AclBinding read = new AclBinding(new ResourcePattern(ResourceType.TOPIC, "orders-", PatternType.PREFIXED),
                new AccessControlEntry("User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW));
        AclBinding deny = new AclBinding(new ResourcePattern(ResourceType.GROUP, "billing", PatternType.LITERAL),
                new AccessControlEntry("User:bob", "10.0.0.1", AclOperation.ALL, AclPermissionType.DENY));
        brokers.admin.createAcls(List.of(read, deny)).all().get();
        Collection<AclBinding> all = brokers.admin.describeAcls(AclBindingFilter.ANY).values().get();
        assertTrue(all.containsAll(List.of(read, deny)), all.toString());
        Collection<AclBinding> alices = brokers.admin.describeAcls(new AclBindingFilter(ResourcePatternFilter.ANY,
                new AccessControlEntryFilter("User:alice", null, AclOperation.ANY, AclPermissionType.ANY)))
                .values().get();
        assertEquals(List.of(read), List.copyOf(alices));
        // A topic the prefixed ACL covers, asked with MATCH.
        Collection<AclBinding> matching = brokers.admin.describeAcls(new AclBindingFilter(
                new ResourcePatternFilter(ResourceType.TOPIC, "orders-eu", PatternType.MATCH),
                AccessControlEntryFilter.ANY)).values().get();
        assertEquals(List.of(read), List.copyOf(matching));

        Collection<AclBinding> deleted = brokers.admin.deleteAcls(List.of(new AclBindingFilter(
                new ResourcePatternFilter(ResourceType.GROUP, "billing", PatternType.LITERAL),
                AccessControlEntryFilter.ANY))).all().get();
        assertEquals(List.of(deny), List.copyOf(deleted));
        all = brokers.admin.describeAcls(AclBindingFilter.ANY).values().get();
        assertTrue(all.contains(read) && !all.contains(deny), all.toString());
        brokers.admin.deleteAcls(List.of(read.toFilter())).all().get();
    }

    /** SCRAM users made (the client salts the password), described without keys, and deleted. */
    @Test
    void scramUsersAreMadeDescribedAndDeleted() throws Exception {
        brokers.admin.alterUserScramCredentials(List.of(
                new UserScramCredentialUpsertion("app", new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                        "app-secret"),
                new UserScramCredentialUpsertion("app", new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                        "app-secret"),
                new UserScramCredentialUpsertion("old", new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                        "old-secret"))).all().get();
        Map<String, UserScramCredentialsDescription> users = brokers.admin.describeUserScramCredentials().all().get();
        assertEquals(Set.of(ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256),
                users.get("app").credentialInfos().stream().map(ScramCredentialInfo::mechanism)
                        .collect(Collectors.toSet()));
        assertTrue(users.get("app").credentialInfos().stream()
                .anyMatch(i -> i.mechanism() == ScramMechanism.SCRAM_SHA_512 && i.iterations() == 8192));
        brokers.admin.alterUserScramCredentials(List.of(
                new UserScramCredentialDeletion("old", ScramMechanism.SCRAM_SHA_256))).all().get();
        users = brokers.admin.describeUserScramCredentials().all().get();
        assertFalse(users.containsKey("old"), users.keySet().toString());
        assertTrue(users.containsKey("app"));
    }

    /** The cluster, its log directories with the partitions' sizes, and the producers of a partition. */
    @Test
    void theClusterLogDirectoriesAndProducersAreDescribed() throws Exception {
        DescribeClusterResult cluster = brokers.admin.describeCluster();
        assertNotNull(cluster.clusterId().get());
        assertEquals(List.of(1), cluster.nodes().get().stream().map(n -> n.id()).toList());
        assertEquals(1, cluster.controller().get().id());

        Clients.createTopic(brokers.admin, "described", 2);
        produce("described", 1, 50);
        Map<String, LogDirDescription> dirs = brokers.admin.describeLogDirs(List.of(1)).allDescriptions().get().get(1);
        assertEquals(1, dirs.size(), dirs.toString());
        LogDirDescription only = dirs.values().iterator().next();
        assertTrue(only.error() == null, only.toString());
        TopicPartition tp = new TopicPartition("described", 1);
        assertTrue(only.replicaInfos().containsKey(tp), only.replicaInfos().keySet().toString());
        assertTrue(only.replicaInfos().get(tp).size() > 50 * 10, only.replicaInfos().get(tp).toString());

        List<ProducerState> producers = brokers.admin.describeProducers(List.of(tp)).partitionResult(tp).get()
                .activeProducers();
        // produce() sends its 50 records through one idempotent producer (the client's default).
        assertEquals(1, producers.size(), producers.toString());
        assertEquals(49, producers.get(0).lastSequence());
        assertTrue(producers.get(0).producerId() >= 0);
    }

    /**
     * The feature levels (ApiVersions v3+): the consumer group protocol finalized at
     * {@code group.version} 1, transactions v2 not ({@code transaction.version} 0, so left out),
     * the broker's own {@code stillwater.version} (a new single node at its newest level, 2).
     */
    @Test
    void theFeatureLevelsAreDescribed() throws Exception {
        FeatureMetadata features = brokers.admin.describeFeatures().featureMetadata().get();
        Map<String, FinalizedVersionRange> finalized = features.finalizedFeatures();
        assertEquals(Set.of("group.version", "stillwater.version"), finalized.keySet(), finalized.toString());
        assertEquals(1, finalized.get("group.version").maxVersionLevel());
        assertEquals(1, finalized.get("group.version").minVersionLevel());
        assertEquals(2, finalized.get("stillwater.version").maxVersionLevel());
        assertTrue(features.finalizedFeaturesEpoch().isPresent(), features.toString());
        Map<String, SupportedVersionRange> supported = features.supportedFeatures();
        assertEquals(2, supported.get("stillwater.version").maxVersion());
        // Both client lines (3.9 and 4.x) ask at v4, where a range from 0 is listed.
        assertEquals(Set.of("group.version", "transaction.version", "stillwater.version"),
                supported.keySet(), supported.toString());
        assertEquals(0, supported.get("group.version").minVersion());
        assertEquals(1, supported.get("group.version").maxVersion());
        assertEquals(0, supported.get("transaction.version").maxVersion());
    }

    /**
     * ListConfigResources (KIP-1142, a 4.1+ client's call, reached by reflection so that the
     * suite also builds against 3.x): every type by default — the topics and the broker — or
     * the types named.
     */
    @Test
    void configResourcesAreListed() throws Exception {
        org.junit.jupiter.api.Assumptions.assumeFalse(Clients.version().startsWith("3."), "a 4.1+ client's call");
        Clients.createTopic(brokers.admin, "listed-configs", 1);
        Object all = Admin.class.getMethod("listConfigResources").invoke(brokers.admin);
        Collection<?> listed = (Collection<?>) ((org.apache.kafka.common.KafkaFuture<?>) all.getClass()
                .getMethod("all").invoke(all)).get();
        assertTrue(listed.contains(new ConfigResource(ConfigResource.Type.TOPIC, "listed-configs")), listed.toString());
        assertTrue(listed.contains(new ConfigResource(ConfigResource.Type.BROKER, "1")), listed.toString());
        assertTrue(listed.contains(new ConfigResource(ConfigResource.Type.BROKER_LOGGER, "1")), listed.toString());
        Class<?> options = Class.forName("org.apache.kafka.clients.admin.ListConfigResourcesOptions");
        Object some = Admin.class.getMethod("listConfigResources", Set.class, options)
                .invoke(brokers.admin, Set.of(ConfigResource.Type.BROKER), options.getConstructor().newInstance());
        Collection<?> brokersOnly = (Collection<?>) ((org.apache.kafka.common.KafkaFuture<?>) some.getClass()
                .getMethod("all").invoke(some)).get();
        assertEquals(List.of(new ConfigResource(ConfigResource.Type.BROKER, "1")), List.copyOf(brokersOnly));
    }

    /**
     * Looking up a group's coordinator makes {@code __consumer_offsets} as Kafka does, so that a
     * client may find it in Metadata (internal) right after, before any group has written.
     */
    @Test
    void aCoordinatorLookupMakesTheOffsetsTopic() throws Exception {
        try (Broker fresh = new Broker(dir.resolve("fresh"), "fresh-broker", 1).startReady();
             Admin freshAdmin = Clients.admin(fresh.bootstrap())) {
            assertFalse(freshAdmin.listTopics(new org.apache.kafka.clients.admin.ListTopicsOptions().listInternal(true))
                    .names().get().contains("__consumer_offsets"));
            // describeConsumerGroups asks FindCoordinator first. The group does not exist:
            // DescribeGroups v6 (4.x clients) says so, as Kafka 4 does; v5 describes it Dead.
            try {
                freshAdmin.describeConsumerGroups(List.of("nobody-yet")).all().get();
            } catch (java.util.concurrent.ExecutionException e) {
                if (!(e.getCause() instanceof org.apache.kafka.common.errors.GroupIdNotFoundException)) {
                    throw e;
                }
            }
            long deadline = System.nanoTime() + 10_000_000_000L;
            Set<String> topics = Set.of();
            while (System.nanoTime() < deadline) {
                topics = freshAdmin.listTopics(new org.apache.kafka.clients.admin.ListTopicsOptions().listInternal(true))
                        .names().get();
                if (topics.contains("__consumer_offsets")) {
                    break;
                }
                Thread.sleep(100);
            }
            assertTrue(topics.contains("__consumer_offsets"), topics.toString());
            TopicDescription offsets = freshAdmin.describeTopics(List.of("__consumer_offsets")).allTopicNames().get()
                    .get("__consumer_offsets");
            assertTrue(offsets.isInternal());
        }
    }
}
