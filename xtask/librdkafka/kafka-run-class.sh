#!/bin/sh
# Stands in for Kafka's bin/kafka-run-class.sh in the directory `cargo xtask librdkafka` gives
# librdkafka's tests as KAFKA_PATH: it runs a Java class with the jars of ../libs (Kafka's Java
# client and what it needs) and the caller's CLASSPATH, as Kafka's script does.
here=$(cd "$(dirname "$0")" && pwd)
exec java -cp "${CLASSPATH:+$CLASSPATH:}$here/../libs/*" "$@"
