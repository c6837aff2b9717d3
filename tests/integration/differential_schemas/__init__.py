"""Message schemas, in Kafka's JSON schema format, of APIs kafka-python's protocol layer does
not define (the consumer group protocol of KIP-848), written for the differential harness from
the protocol's field lists, so that it can send them to both servers."""
