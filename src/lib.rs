//! LogSentry: reads logs from files and RabbitMQ, stores every line in DuckDB,
//! computes per-window features with Polars, flags anomalies with an Isolation
//! Forest and explains them. The binary (`src/main.rs`) is a thin CLI over this
//! library; each module owns one stage of the pipeline.

pub mod cli;
pub mod config;
pub mod detect;
pub mod features;
pub mod generate;
pub mod ingest;
pub mod parse;
pub mod record;
pub mod report;
pub mod source;
pub mod store;
pub mod stream;
pub mod template;
pub mod web;
