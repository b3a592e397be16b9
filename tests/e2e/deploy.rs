//! deploy/: the systemd unit passes `systemd-analyze verify` and keeps its sandbox; the
//! settings the unit, the container image and the compose file give siar are ones it accepts.

use std::path::PathBuf;
use std::process::Command;

use crate::utils::*;

fn deploy(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn repo_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/siar.toml")
}

/// `siar check-config` with these variables: (success, everything it printed).
fn check_config(env: &[(String, String)]) -> (bool, String) {
    let out = Command::new(siar_bin())
        .arg("--config")
        .arg(repo_config())
        .arg("check-config")
        .env_remove("SIAR_CONFIG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_systemd_unit_verifies_and_keeps_its_sandbox() {
    let unit = deploy("siar.service");
    for directive in [
        "Type=notify",
        "User=siar",
        "ProtectSystem=strict",
        "StateDirectory=siar/data siar/inbox",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive}");
    }
    // Nothing but the store and the inbox is writable: no ReadWritePaths beyond them.
    assert!(!unit.contains("ReadWritePaths"), "{unit}");
    // Verified with the binary this build made standing in for /usr/local/bin/siar.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("siar.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/siar", siar_bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        !said.contains("siar.service"),
        "warnings about the unit:\n{said}"
    );

    // The environment the unit sets is accepted as is.
    let env: Vec<(String, String)> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(env.len() >= 2, "{env:?}");
    let (ok, said) = check_config(&env);
    assert!(ok && !said.contains("ignored"), "{said}");
}

#[test]
fn the_container_image_and_compose_file_give_settings_siar_accepts() {
    let docker = deploy("Dockerfile");
    assert_eq!(docker.matches("\nFROM ").count(), 2, "multi-stage");
    for line in [
        "USER siar:siar",
        "VOLUME [\"/var/lib/siar\"]",
        "HEALTHCHECK",
        "/readyz",
    ] {
        assert!(docker.contains(line), "the Dockerfile lacks {line}");
    }
    // ENV lines (with continuations) of the image.
    let mut env = Vec::new();
    let joined = docker.replace("\\\n", " ");
    for l in joined.lines().filter_map(|l| l.strip_prefix("ENV ")) {
        for kv in l.split_whitespace() {
            if let Some((k, v)) = kv.split_once('=') {
                env.push((k.to_owned(), v.to_owned()));
            }
        }
    }
    assert!(env.iter().any(|(k, _)| k == "SIAR_STORE_PATH"), "{env:?}");
    // The compose file's environment for siar, with its defaults filled in.
    let compose = deploy("compose.yaml");
    let siar_service = compose
        .split("\n  relay:")
        .next()
        .unwrap()
        .split("environment:")
        .nth(1)
        .unwrap()
        .split("volumes:")
        .next()
        .unwrap();
    for l in siar_service.lines() {
        let Some((k, v)) = l.trim().split_once(": ") else {
            continue;
        };
        let v = v.trim_matches('"');
        let v = if v.starts_with("${SIAR_API_TOKEN") {
            "token-for-the-test".to_owned()
        } else if let Some(default) = v.strip_prefix("${").and_then(|x| x.split_once(":-")) {
            default.1.trim_end_matches('}').to_owned()
        } else {
            v.to_owned()
        };
        env.push((k.to_owned(), v));
    }
    assert!(
        env.iter()
            .any(|(k, v)| k == "SIAR_SMTP_URL" && v == "smtp://relay:587"),
        "{env:?}"
    );
    assert!(compose.contains("\n  relay:") && compose.contains("postfix"));
    let (ok, said) = check_config(&env);
    assert!(ok && !said.contains("ignored"), "{said}");
    assert!(said.contains("listen 0.0.0.0:8080"), "{said}");
}
