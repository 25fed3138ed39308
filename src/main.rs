//! The `replicheck` command: a thin layer over the library that parses arguments, renders
//! outcomes and picks exit codes. The bundled demo service is linked in here, not into the
//! library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
