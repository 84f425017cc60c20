//! Reading B's `/metrics` for the lab's tick, with a deadline of its own; the text is read by
//! `echo_lab::load::prometheus`.

use std::time::Duration;

use echo_lab::http::Deadline;
use echo_lab::http::client::Client;
use echo_lab::load::prometheus::Exposition;

/// How long a scrape may take: well inside the lab's half-second tick. A service that does not
/// answer by then is shown as unknown for this tick.
pub const SCRAPE_DEADLINE: Duration = Duration::from_millis(300);

/// B's `/metrics`, or why there is none.
pub async fn fetch(client: &Client) -> Result<Exposition, String> {
    let response = client
        .get("/metrics", &[], Deadline::after(SCRAPE_DEADLINE))
        .await
        .map_err(|e| e.to_string())?;
    if response.head.status != 200 {
        return Err(format!("/metrics answered {}", response.head.status));
    }
    Ok(Exposition::parse(&String::from_utf8_lossy(&response.body)))
}
