//! `zenkoctl healthcheck` (hidden): the image's HEALTHCHECK. A scratch image has no shell and no
//! curl, so the binary probes the server itself. Exit 0 healthy, 1 unhealthy.

use std::time::Duration;

use serde_json::json;

use super::Context;
use crate::image::healthcheck::{self, Target};
use crate::output::{coded, Exit};

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// A URL that must answer 200 (repeatable; all must). Default: GET /_/health on the ports
    /// of the `zenkoctl serve` running as PID 1 (9991, 9990), the first that listens decides.
    #[arg(long, value_name = "URL")]
    pub url: Vec<String>,
    /// Seconds each probe may take.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub timeout: f64,
}

pub fn run(args: HealthcheckArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    let reports = if args.url.is_empty() {
        vec![
            healthcheck::check_first(&healthcheck::default_targets(), timeout)
                .map_err(|e| coded(Exit::Failure, e))?,
        ]
    } else {
        let targets = args
            .url
            .iter()
            .map(|u| Target::parse(u))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| coded(Exit::InvalidInput, e))?;
        healthcheck::check_all(&targets, timeout).map_err(|e| coded(Exit::Failure, e))?
    };
    ctx.output
        .result(&json!({"ok": true, "healthy": reports}), |w| {
            for r in &reports {
                let _ = writeln!(w, "healthy: {} ({})", r.url, r.status);
            }
        });
    Ok(Exit::Ok)
}
