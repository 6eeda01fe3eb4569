//! Where a subscriber hands its batches.
//!
//! Owns: the [`Sink`] seam, its production side (the pipeline's [`Intake`]) and [`AckOnly`],
//! the benchmark ceiling. Must never: be given real data through [`AckOnly`], which acks
//! without any effect.

use crate::source::intake::{Intake, PipelineClosed};
use crate::source::Envelope;
use async_trait::async_trait;

/// Where a subscriber hands its batches: the pipeline's [`Intake`], or for the benchmark
/// ceiling a sink that only acks.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    async fn submit(&self, batch: Vec<Envelope>) -> Result<(), PipelineClosed>;
}

#[async_trait]
impl Sink for Intake {
    async fn submit(&self, batch: Vec<Envelope>) -> Result<(), PipelineClosed> {
        Intake::submit(self, batch).await
    }
}

/// Acks every message on arrival: the bare subscriber of design §8, the ceiling the
/// pipeline's throughput is compared with. Never for real data.
#[derive(Debug, Default, Clone, Copy)]
pub struct AckOnly;

#[async_trait]
impl Sink for AckOnly {
    async fn submit(&self, batch: Vec<Envelope>) -> Result<(), PipelineClosed> {
        crate::ack::settle(batch.into_iter().map(|e| e.ack), None);
        Ok(())
    }
}
