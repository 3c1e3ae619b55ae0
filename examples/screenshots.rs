//! Writes SVG pictures of the cockpit's main views from the real render:
//! `scripts/screenshots` (or `cargo run --example screenshots -- DIR`).

use flightdeck::ui::preview::Preview;
use flightdeck::ui::svg;

const CHECKOUT: &str = "prod-eu-1/checkout-api";
const PAYMENTS: &str = "prod-eu-1/payments";

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "screenshots".into());
    std::fs::create_dir_all(&dir)?;
    let save = |name: &str, p: &mut Preview, w: u16, h: u16| {
        let path = format!("{dir}/{name}.svg");
        std::fs::write(&path, svg::render(&p.buffer(w, h)))?;
        println!("wrote {path}");
        std::io::Result::Ok(())
    };

    let mut p = Preview::demo(14, "default").await;
    p.select(CHECKOUT);
    save("fleet", &mut p, 140, 42)?;
    p.keys("a").await;
    save("confirm-abort", &mut p, 120, 36)?;
    p.keys("\x1b").await;

    p.advance(16).await;
    p.select(PAYMENTS);
    save("bad-canary-rolled-back", &mut p, 140, 42)?;
    p.keys("?").await;
    save("help", &mut p, 120, 36)?;

    let mut small = Preview::demo(14, "colorblind").await;
    small.select(CHECKOUT);
    save("colorblind-80x24", &mut small, 80, 24)?;
    Ok(())
}
