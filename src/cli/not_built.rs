//! Arguments of commands that are not built yet: they accept anything, so that the command
//! tree is complete, and fail with [`crate::output::Exit::NotImplemented`].

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}
