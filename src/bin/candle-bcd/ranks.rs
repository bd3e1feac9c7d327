//! The processes of a run: one, or the ranks `mpirun` started (with the `mpi` feature).

use std::sync::Arc;

use candle_bcd::comm::{Communicator, SingleProcess};
use candle_bcd::BcdError;

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

    /// Bytes this rank has passed to sums over ranks so far (0 in one process).
    pub fn bytes_summed(&self) -> u64 {
        #[cfg(feature = "mpi")]
        return self.mpi.bytes_summed();
        #[cfg(not(feature = "mpi"))]
        0
    }

    /// Ends the run after `error`: prints it (naming this rank when there are several) and,
    /// with several ranks, ends them all at once, so that none waits for this one. A rank that
    /// only learnt of another rank's failure gives that rank a moment to report its own error.
    pub fn fail(&self, error: &anyhow::Error) -> std::process::ExitCode {
        if self.comm.size() == 1 {
            eprintln!("error: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
        // One write, so that the ranks' messages do not interleave.
        let line = format!(
            "error (rank {} of {}): {error:#}\n",
            self.comm.rank(),
            self.comm.size()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        let elsewhere = error.chain().any(|e| {
            matches!(
                e.downcast_ref::<BcdError>(),
                Some(BcdError::Distributed { .. })
            )
        });
        if elsewhere {
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        #[cfg(feature = "mpi")]
        self.mpi.abort(1);
        #[cfg(not(feature = "mpi"))]
        std::process::ExitCode::FAILURE
    }
}
