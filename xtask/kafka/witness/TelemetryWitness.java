package dev.stillwater.witness;

import java.util.List;
import java.util.Map;

import org.apache.kafka.common.metrics.KafkaMetric;
import org.apache.kafka.common.metrics.MetricsReporter;
import org.apache.kafka.server.telemetry.ClientTelemetryExporter;
import org.apache.kafka.server.telemetry.ClientTelemetryExporterProvider;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.MetricsData;

/**
 * A metrics reporter that makes the Kafka the tests compare with serve client telemetry
 * (KIP-714): Kafka answers GetTelemetrySubscriptions and PushTelemetry, and lists them, only
 * with a reporter that receives clients' metrics. Each push is read as OTLP MetricsData, as a
 * telemetry backend reads it (one that cannot be read is refused: Kafka answers INVALID_RECORD),
 * then dropped. Nothing else is reported.
 */
public class TelemetryWitness implements MetricsReporter, ClientTelemetryExporterProvider {
    @Override
    public void configure(Map<String, ?> configs) {
    }

    @Override
    public void init(List<KafkaMetric> metrics) {
    }

    @Override
    public void metricChange(KafkaMetric metric) {
    }

    @Override
    public void metricRemoval(KafkaMetric metric) {
    }

    @Override
    public void close() {
    }

    @Override
    public ClientTelemetryExporter clientTelemetryExporter() {
        return (context, payload) -> {
            try {
                MetricsData.parseFrom(payload.data());
            } catch (Exception e) {
                throw new IllegalArgumentException("not OTLP metrics: " + e.getMessage(), e);
            }
        };
    }
}
