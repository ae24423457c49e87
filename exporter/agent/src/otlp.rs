//! OTLP traces: joined transactions as spans (being written).
