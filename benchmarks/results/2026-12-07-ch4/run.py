"""Chapter 4's numbers and pictures: python benchmarks/results/2026-12-07-ch4/run.py (writes run.log's tables
to stdout and the PNG files next to this script).  The same as

    symbp approx "sin(3*x) + 0.5*x" --neurons 5,10,20,50,100,200 --epochs 1000 --plot approx.png
    symbp approx "sin(3*x)*y + 0.5" --dims 2 --neurons 4,8,16,32 --plot towers.png

plus the steepness sweep and the M shifted copies."""

from pathlib import Path

from symbp import approx

HERE = Path(__file__).parent
F, L = "sin(3*x) + 0.5*x", 3.5  # |3 cos(3x) + 0.5| <= 3.5

print(f"1-D: f = {F} on [0, 1], w d = 60, L = {L}; trained: same hidden size, 200 samples, 1000 epochs, "
      "mini-batch 10, eta 2/hidden")
rows = approx.table(F, [5, 10, 20, 50, 100, 200], epochs=1000, lipschitz_constant=L)
print(approx.format_table(rows))
approx.plot_errors(rows, HERE / "approx.png", f"f = {F}: sup error against N (constructed vs trained)")
approx.plot_construction(approx.construct(F, 5), HERE / "approx-bumps.png")

print("\nsteepness: N = 20, w d from 2 to 200 (sup error everywhere, and at least d/10 from the cuts)")
print(f"{'w d':>6} {'w':>8} {'sup':>10} {'bound':>10} {'sup away':>10} {'bound away':>10}")
for wd in (2, 5, 10, 20, 60, 200):
    c = approx.construct(F, 20, w=wd * 20.0)
    tau = 0.1 / 20
    print(f"{wd:>6} {c.w:>8.4g} {approx.errors(c)['sup']:>10.3e} {approx.bound(c, (L,)):>10.3e} "
          f"{approx.errors(c, away=tau)['sup']:>10.3e} {approx.bound(c, (L,), away=tau):>10.3e}")

print("\nM shifted copies: f = sin(3*x), N = 10, w = 100 (error within 0.02 of the first copy's cuts, and everywhere)")
print(f"{'M':>3} {'hidden':>6} {'sup near':>10} {'mean near':>10} {'sup':>10} {'mean':>10}")
for m in (1, 2, 4, 8):
    c = approx.construct("sin(3*x)", 10, w=100.0, m=m)
    near, every = approx.errors(c, near=0.02), approx.errors(c)
    print(f"{m:>3} {c.model.params[0][0].shape[0]:>6} {near['sup']:>10.3e} {near['mean']:>10.3e} "
          f"{every['sup']:>10.3e} {every['mean']:>10.3e}")
approx.plot_construction(approx.construct("sin(3*x)", 5, w=50.0, m=4), HERE / "copies-bumps.png")

G = "sin(3*x)*y + 0.5"
print(f"\n2-D towers: f = {G} on [0, 1] x [0, 1], w d = 60, h = 200, Lx = 3, Ly = 1")
rows2 = approx.table2d(G, [4, 8, 16, 32], lipschitz_constants=(3.0, 1.0))
print(approx.format_table2d(rows2))
approx.plot_errors2d(rows2, HERE / "towers.png", f"f = {G}: towers, error against N")
approx.plot_towers(approx.construct(G, 6, dims=2), HERE / "towers-heatmap.png")
