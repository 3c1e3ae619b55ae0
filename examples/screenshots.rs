//! Writes SVG pictures of the cockpit from the real render:
//! `scripts/screenshots` (or `cargo run --example screenshots -- DIR`).
//! Every screen (list, detail, help, palette, confirm) at 80×24, 120×40
//! and 200×60, and a few moments worth showing in the README.

use flightdeck::backend::sim::Scenario;
use flightdeck::fleet;
use flightdeck::preview::svg;
use flightdeck::preview::Preview;
use flightdeck_core::plan::Plan;

const CHECKOUT: &str = "prod-eu-1/checkout-api";
const PAYMENTS: &str = "prod-eu-1/payments";
const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];

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

    // Every screen at every size, 20 minutes into the demo.
    for (w, h) in SIZES {
        let mut p = Preview::demo(20, "default").await;
        p.select(CHECKOUT);
        save(&format!("list-{w}x{h}"), &mut p, w, h)?;
        p.keys("\n").await;
        save(&format!("detail-{w}x{h}"), &mut p, w, h)?;
        p.keys("\x1b?").await;
        save(&format!("help-{w}x{h}"), &mut p, w, h)?;
        p.keys("\x1b:pause u\t").await;
        save(&format!("palette-{w}x{h}"), &mut p, w, h)?;
        p.keys("\x1ba").await;
        save(&format!("confirm-{w}x{h}"), &mut p, w, h)?;
    }

    let mut p = Preview::demo(14, "default").await;
    p.select(CHECKOUT);
    save("fleet", &mut p, 140, 42)?;
    p.keys("a").await;
    save("confirm-abort", &mut p, 120, 36)?;
    p.keys("\x1b").await;

    p.advance(16).await;
    p.select(PAYMENTS);
    save("bad-canary-rolled-back", &mut p, 140, 42)?;
    p.keys("\nkk").await;
    save("events-expanded-80x24", &mut p, 80, 24)?;

    let mut small = Preview::demo(14, "colorblind").await;
    small.select(CHECKOUT);
    save("colorblind-80x24", &mut small, 80, 24)?;

    // The backend times out from minute 15: 10 % is wanted, 1 % is what runs.
    let (file, text) = fleet::DEMO_FLEET[0];
    let plan = Plan::parse(file, text).expect("the demo plan parses");
    let stuck = fleet::setup(plan, file, text.into(), Some(Scenario::StuckBackend), 1).await.expect("sim setup");
    let mut p = Preview::of(vec![stuck], 18, "default").await;
    p.select(CHECKOUT);
    save("weight-not-applied-80x24", &mut p, 80, 24)?;
    Ok(())
}
