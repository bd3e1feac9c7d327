//! [`Mpi`]: the [`Communicator`] of `MPI_COMM_WORLD`, through rsmpi.
//!
//! Sums are reduced onto rank 0 and broadcast from there (rather than `MPI_Allreduce`, whose
//! standard does not promise the same bits on every rank), so every rank sees identical sums.

use ::mpi::collective::SystemOperation;
use ::mpi::environment::Universe;
use ::mpi::traits::{Communicator as _, CommunicatorCollectives, Root};
use ::mpi::Threading;

use std::sync::atomic::{AtomicU64, Ordering};

use super::Communicator;
use crate::error::{BcdError, Result};

/// The processes of `MPI_COMM_WORLD`, e.g. those `mpirun -n P` started. Owns the MPI
/// environment: MPI is finalised when the last handle is dropped.
pub struct Mpi {
    universe: Universe,
    /// Bytes this rank has passed to sums (`sum_f64`) so far.
    summed: AtomicU64,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mpi(rank {} of {})", self.rank(), self.size())
    }
}

impl Mpi {
    /// Initialises MPI (only the calling thread makes MPI calls: `MPI_THREAD_FUNNELED`). A
    /// program started without `mpirun` runs as the single rank of its own world.
    pub fn init() -> Result<Self> {
        let (universe, level) =
            ::mpi::initialize_with_threading(Threading::Funneled).ok_or_else(|| {
                BcdError::Distributed {
                    rank: 0,
                    reason: "MPI is already initialised in this process".into(),
                }
            })?;
        if level < Threading::Funneled {
            return Err(BcdError::Distributed {
                rank: universe.world().rank() as usize,
                reason: format!("the MPI library offers thread level {level:?}, Funneled needed"),
            });
        }
        Ok(Self {
            universe,
            summed: AtomicU64::new(0),
        })
    }

    /// Bytes passed to sums over ranks so far (each is reduced onto rank 0 and broadcast back,
    /// so about twice this crosses the network per rank).
    pub fn bytes_summed(&self) -> u64 {
        self.summed.load(Ordering::Relaxed)
    }

    /// Ends every rank of the job with exit status `code` (`MPI_Abort`): what a rank does when
    /// it cannot go on, so that the others do not wait for it forever.
    pub fn abort(&self, code: i32) -> ! {
        self.universe.world().abort(code)
    }
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.universe.world().rank() as usize
    }

    fn size(&self) -> usize {
        self.universe.world().size() as usize
    }

    fn sum_f64(&self, buf: &mut [f64]) {
        self.summed
            .fetch_add(std::mem::size_of_val(buf) as u64, Ordering::Relaxed);
        let world = self.universe.world();
        let root = world.process_at_rank(0);
        let send = buf.to_vec();
        if world.rank() == 0 {
            root.reduce_into_root(&send[..], buf, SystemOperation::sum());
        } else {
            root.reduce_into(&send[..], SystemOperation::sum());
        }
        root.broadcast_into(buf);
    }

    fn broadcast_f32(&self, buf: &mut [f32]) {
        self.universe.world().process_at_rank(0).broadcast_into(buf);
    }

    fn broadcast_bytes(&self, buf: &mut [u8]) {
        self.universe.world().process_at_rank(0).broadcast_into(buf);
    }

    fn barrier(&self) {
        self.universe.world().barrier();
    }
}
