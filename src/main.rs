fn main() -> std::process::ExitCode {
    replicheck::cli::main()
}
