use clap::Parser;

fn main() {
    let cli = atrest::cli::Cli::parse();
    atrest::logging::init();
    std::process::exit(atrest::cli::run(cli));
}
