// KafkaJS's transactional producer against the broker; run by test_kafkajs.py.
//
// Usage: node transactions.js <bootstrap host:port,…> <topic> <input topic> <group>
//
// 1. A transactional producer commits a transaction (a record to each of the topic's three
//    partitions, and the input offset 5 of <group> sent to the transaction), aborts one (three
//    records, the input offset 9), and commits another.
// 2. A second producer with the same transactional id starts: the first is now a zombie, and
//    its next transaction fails; the second commits one.
// 3. A read_committed consumer and a read_uncommitted one read the topic from the start.
// 4. The admin client fetches <group>'s committed offsets of the input topic.
//
// Prints one JSON object: what each consumer read, the offsets, the zombie's error.

const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, input, group] = process.argv.slice(2);
const kafka = new Kafka({
  clientId: 'kafkajs-transactions',
  brokers: bootstrap.split(','),
  logLevel: logLevel.NOTHING,
  retry: { retries: 8 },
});
const transactionalId = `${topic}-txn`;

function producer() {
  return kafka.producer({
    transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: 30000,
  });
}

async function inTransaction(p, label, offset, end, begun = null) {
  const txn = begun || (await p.transaction());
  try {
    for (const partition of [0, 1, 2]) {
      await txn.send({ topic, messages: [{ partition, value: `${label}-p${partition}` }] });
    }
    if (offset !== null) {
      await txn.sendOffsets({
        consumerGroupId: group,
        topics: [{ topic: input, partitions: [{ partition: 0, offset: String(offset) }] }],
      });
    }
  } catch (e) {
    await txn.abort().catch(() => {});
    throw e;
  }
  await (end === 'commit' ? txn.commit() : txn.abort());
}

// Reads the topic from the start until nothing new has come for `idleMs`.
async function readAll(readUncommitted) {
  const consumer = kafka.consumer({
    groupId: `${group}-reader-${readUncommitted ? 'uncommitted' : 'committed'}`,
    readUncommitted,
    maxWaitTimeInMs: 200,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = [];
  let last = Date.now();
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      seen.push({ partition, offset: Number(message.offset), value: message.value.toString() });
      last = Date.now();
    },
  });
  const started = Date.now();
  const idleMs = 4000;
  while (Date.now() - last < idleMs || (seen.length === 0 && Date.now() - started < 30000)) {
    await new Promise((r) => setTimeout(r, 200));
  }
  await consumer.disconnect();
  return seen;
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [
      { topic, numPartitions: 3 },
      { topic: input, numPartitions: 1 },
    ],
    waitForLeaders: true,
  });

  const first = producer();
  await first.connect();
  await inTransaction(first, 'committed-1', 5, 'commit');
  await inTransaction(first, 'aborted', 9, 'abort');
  await inTransaction(first, 'committed-2', null, 'commit');

  // KafkaJS asks for the transactional producer id (InitProducerId, which bumps the epoch and
  // fences the first producer) when the producer begins its first transaction.
  const second = producer();
  await second.connect();
  const secondTxn = await second.transaction();
  let zombieError = null;
  try {
    await inTransaction(first, 'zombie', null, 'commit');
  } catch (e) {
    zombieError = { name: e.name, type: e.type || (e.cause && e.cause.type) || null, message: e.message };
  }
  await inTransaction(second, 'committed-3', null, 'commit', secondTxn);
  await second.disconnect();
  await first.disconnect().catch(() => {});

  const committed = await readAll(false);
  const uncommitted = await readAll(true);
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [input] });
  await admin.disconnect();
  console.log(JSON.stringify({ committed, uncommitted, offsets, zombieError }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
