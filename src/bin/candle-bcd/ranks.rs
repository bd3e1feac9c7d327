//! The processes of a run: one, or the ranks `mpirun` started (with the `mpi` feature).

use std::sync::Arc;

use candle_bcd::comm::{Communicator, SingleProcess};

/// The ranks of this run and how a rank that cannot go on ends them all.
pub struct Ranks {
    comm: Arc<dyn Communicator>,
    #[cfg(feature = "mpi")]
    mpi: Arc<candle_bcd::comm::Mpi>,
}

impl Ranks {
    /// With the `mpi` feature: MPI's world (one rank when not started by `mpirun`); without it,
    /// this process alone.
    pub fn init() -> anyhow::Result<Self> {
        #[cfg(feature = "mpi")]
        {
            let mpi = Arc::new(candle_bcd::comm::Mpi::init()?);
            Ok(Self {
                comm: mpi.clone(),
                mpi,
            })
        }
        #[cfg(not(feature = "mpi"))]
        Ok(Self {
            comm: Arc::new(SingleProcess),
        })
    }

    /// The ranks, for the library.
    pub fn comm(&self) -> Arc<dyn Communicator> {
        if self.comm.size() == 1 {
            return Arc::new(SingleProcess);
        }
        self.comm.clone()
    }

    /// Whether this rank reports (rank 0).
    pub fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// Ends the run after `error`: prints it (naming this rank when there are several) and,
    /// with several ranks, ends them all at once, so that none waits for this one.
    pub fn fail(&self, error: &anyhow::Error) -> std::process::ExitCode {
        if self.comm.size() == 1 {
            eprintln!("error: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
        eprintln!(
            "error (rank {} of {}): {error:#}",
            self.comm.rank(),
            self.comm.size()
        );
        #[cfg(feature = "mpi")]
        self.mpi.abort(1);
        #[cfg(not(feature = "mpi"))]
        std::process::ExitCode::FAILURE
    }
}
