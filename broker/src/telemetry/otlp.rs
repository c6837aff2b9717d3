//! The metrics a client pushes, read: an OTLP `MetricsData` (protobuf, the OpenTelemetry
//! project's generated types) flattened to one value per metric and attribute set. Gauges and
//! sums give their value; histograms and summaries their count and sum (as `<name>.count`
//! and `<name>.sum`); attributes of other kinds than text, number and truth are left out.

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, MetricsData};
use prost::Message;

/// One pushed value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The metric's name as the client gave it (`org.apache.kafka.producer.record.send.total`).
    pub name: String,
    /// The data point's attributes, in the order given.
    pub attributes: Vec<(String, String)>,
    pub value: f64,
}

/// The points of a pushed payload (already decompressed).
pub fn decode(payload: &[u8]) -> Result<Vec<Point>, prost::DecodeError> {
    let data = MetricsData::decode(payload)?;
    let mut out = Vec::new();
    for metric in data
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let mut push = |name: String, attributes: &[KeyValue], value: f64| {
            out.push(Point {
                name,
                attributes: attributes_of(attributes),
                value,
            })
        };
        // A distribution's count and sum, as two values.
        let name = &metric.name;
        let counted = |push: &mut dyn FnMut(String, &[KeyValue], f64),
                       attributes: &[KeyValue],
                       count: u64,
                       sum: f64| {
            push(format!("{name}.count"), attributes, count as f64);
            push(format!("{name}.sum"), attributes, sum);
        };
        match &metric.data {
            Some(Data::Gauge(g)) => {
                for p in &g.data_points {
                    push(metric.name.clone(), &p.attributes, number(&p.value));
                }
            }
            Some(Data::Sum(s)) => {
                for p in &s.data_points {
                    push(metric.name.clone(), &p.attributes, number(&p.value));
                }
            }
            Some(Data::Histogram(h)) => {
                for p in &h.data_points {
                    counted(&mut push, &p.attributes, p.count, p.sum.unwrap_or(0.0));
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                for p in &h.data_points {
                    counted(&mut push, &p.attributes, p.count, p.sum.unwrap_or(0.0));
                }
            }
            Some(Data::Summary(s)) => {
                for p in &s.data_points {
                    counted(&mut push, &p.attributes, p.count, p.sum);
                }
            }
            None => {}
        }
    }
    Ok(out)
}

fn number(v: &Option<number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

fn attributes_of(kvs: &[KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::BoolValue(b) => b.to_string(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), v))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };

    /// A payload as a client sends it: `(name, attributes, value)`, gauges; names ending in
    /// `.total` as monotonic sums.
    pub(crate) type Given<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

    pub(crate) fn payload(points: &[Given<'_>]) -> Vec<u8> {
        let metrics = points
            .iter()
            .map(|(name, attrs, value)| {
                let dp = NumberDataPoint {
                    attributes: attrs
                        .iter()
                        .map(|(k, v)| KeyValue {
                            key: k.to_string(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(v.to_string())),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    value: Some(number_data_point::Value::AsDouble(*value)),
                    ..Default::default()
                };
                let data = if name.ends_with(".total") {
                    Data::Sum(Sum {
                        data_points: vec![dp],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })
                } else {
                    Data::Gauge(Gauge {
                        data_points: vec![dp],
                    })
                };
                Metric {
                    name: name.to_string(),
                    data: Some(data),
                    ..Default::default()
                }
            })
            .collect();
        MetricsData {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn gauges_and_sums_come_back_with_their_attributes() {
        let bytes = payload(&[
            (
                "org.apache.kafka.producer.record.send.total",
                &[("topic", "t")],
                42.0,
            ),
            ("org.apache.kafka.producer.io.wait.ratio", &[], 0.5),
        ]);
        let points = decode(&bytes).unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(
            points[0].name,
            "org.apache.kafka.producer.record.send.total"
        );
        assert_eq!(
            points[0].attributes,
            vec![("topic".to_string(), "t".to_string())]
        );
        assert_eq!(points[0].value, 42.0);
        assert_eq!(points[1].value, 0.5);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]).is_err());
        assert_eq!(decode(&[]).unwrap(), vec![]);
    }
}
