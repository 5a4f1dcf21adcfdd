//! `rcronctl key hash`: the keys file's form of a secret. Needs no server.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Print the hex SHA-256 of the secret on stdin (its first line,
    /// without the line end): the `sha256` of a `[[key]]` in the keys file.
    Hash,
}

/// Runs `key …`.
pub fn run(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Hash => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let secret = line.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(
                secret.len() >= 16,
                "the secret must be at least 16 characters (it was {})",
                secret.len()
            );
            println!("{}", rcron_shared::secret::hash_secret(secret));
        }
    }
    Ok(())
}
