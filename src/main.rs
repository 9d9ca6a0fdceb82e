fn main() -> std::process::ExitCode {
    zenkoctl::cli::main()
}
