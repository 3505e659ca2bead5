#!/usr/bin/env python3
"""Plot a training metrics log (the JSONL that polaris_train --log writes).

    python3 run/plot_metrics.py LOG.jsonl [--out PNG] [--title TEXT]

Draws up to four panels (2x2) against "step": loss, reward, accuracy and
response length, each from whatever keys the log has. Per-step records are the
line; records with an "event" key (validation, evaluation) are drawn as dots,
from the same key or its "val_"/"eval_" variant (val_loss on the loss panel;
a GRPO held-out evaluation's avg_at_k on the accuracy panel).
Panels with no data give their place to other keys found in the log (lr,
grad_norm, kl, entropy, clip_frac, tokens_per_s). Long noisy curves are drawn
raw (light) with an exponential moving average on top.

Uses matplotlib when it is importable; otherwise a small stdlib-only PNG writer
(zlib + struct) draws the same panels with a 3x5 pixel font for titles and axis
ranges, so neither CI nor a bare GPU box needs numpy or matplotlib.

The PNG is written to OUT.tmp and renamed. Default OUT: LOG with .png.
Bad input ends in one line "error: FILE[:LINE]: problem" and exit status 1;
a malformed *last* line (a log still being written) is ignored.
"""
import argparse
import json
import math
import os
import struct
import sys
import zlib

PANELS = [  # (title, per-step key, event keys)
    ("loss", "loss", ["val_loss", "eval_loss", "loss"]),
    ("reward", "reward", ["eval_reward", "val_reward", "reward"]),
    ("accuracy", "accuracy", ["eval_accuracy", "val_accuracy", "avg_at_k", "accuracy"]),
    ("response_len", "response_len", ["eval_response_len", "val_response_len", "response_len"]),
]
EXTRA = ["lr", "grad_norm", "kl", "entropy", "clip_frac", "tokens_per_s", "ms"]


class InputError(Exception):
    pass


def read_log(path):
    try:
        with open(path, "rb") as f:
            raw = f.read().decode("utf-8", errors="replace").split("\n")
    except OSError as e:
        raise InputError("%s: cannot read (%s)" % (path, e.strerror or e))
    numbered = [(i + 1, line) for i, line in enumerate(raw) if line.strip()]
    records = []
    for n, (lineno, line) in enumerate(numbered):
        try:
            rec = json.loads(line)
        except ValueError:
            if n == len(numbered) - 1 and records:
                continue  # the line being written when the log was read
            raise InputError("%s:%d: malformed JSON" % (path, lineno))
        if not isinstance(rec, dict):
            raise InputError("%s:%d: expected a JSON object" % (path, lineno))
        records.append(rec)
    if not records:
        raise InputError("%s: no records" % path)
    return records


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def series(records):
    """[(title, [(x, y)] per-step, [(x, y)] events)] for the panels to draw (<= 4)."""
    def pick(key, event_keys):
        train, events = [], []
        for i, r in enumerate(records):
            x = r.get("step", i)
            if not number(x):
                x = i
            if "event" in r:
                for k in event_keys:
                    if number(r.get(k)):
                        events.append((x, r[k]))
                        break
            elif number(r.get(key)):
                train.append((x, r[key]))
        return train, events

    chosen = []
    for title, key, event_keys in PANELS:
        train, events = pick(key, event_keys)
        if train or events:
            chosen.append((title, train, events))
    for key in EXTRA:
        if len(chosen) >= 4:
            break
        train, events = pick(key, [key])
        if train:
            chosen.append((key, train, events))
    return chosen[:4]


def ema(points, alpha):
    out, s = [], None
    for x, y in points:
        s = y if s is None else (1 - alpha) * s + alpha * y
        out.append((x, s))
    return out


def smoothing(points):
    return 2.0 / (1 + max(10, len(points) // 20)) if len(points) > 50 else None


# --- matplotlib ----------------------------------------------------------------

def plot_matplotlib(panels, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, panel in zip(axes.flat, panels):
        name, train, events = panel
        if train:
            a = smoothing(train)
            xs, ys = zip(*train)
            if a:
                ax.plot(xs, ys, color="#9ecae1", linewidth=0.8, label="train")
                sx, sy = zip(*ema(train, a))
                ax.plot(sx, sy, color="#1f77b4", linewidth=1.5, label="train (ema)")
            else:
                ax.plot(xs, ys, color="#1f77b4", linewidth=1.5, label="train")
        if events:
            ex, ey = zip(*events)
            ax.plot(ex, ey, "o-", color="#d62728", markersize=4, linewidth=1, label="eval")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)


# --- stdlib PNG fallback -------------------------------------------------------

FONT = {  # 3x5 glyphs, rows top to bottom
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001010010", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "+": "000010111010000", "_": "000000000000111", "@": "111101111100111",
    "/": "001001010100100", ":": "000010000010000", " ": "000000000000000",
    "(": "010100100100010", ")": "010001001001010", "=": "000111000111000",
    "A": "010101111101101", "B": "110101110101110", "C": "011100100100011",
    "D": "110101101101110", "E": "111100110100111", "F": "111100110100100",
    "G": "011100101101011", "H": "101101111101101", "I": "111010010010111",
    "J": "001001001101010", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010",
    "P": "110101110100100", "Q": "010101101110011", "R": "110101110101101",
    "S": "011100010001110", "T": "111010010010010", "U": "101101101101111",
    "V": "101101101101010", "W": "101101111111101", "X": "101101010101101",
    "Y": "101101010010010", "Z": "111001010100111",
}

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GRID = (228, 228, 228)
LIGHT = (158, 202, 225)
BLUE = (31, 119, 180)
RED = (214, 39, 40)
GRAY = (90, 90, 90)


class Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(WHITE * (w * h))

    def set(self, x, y, c):
        x, y = int(round(x)), int(round(y))
        if 0 <= x < self.w and 0 <= y < self.h:
            i = 3 * (y * self.w + x)
            self.px[i:i + 3] = bytes(c)

    def rect(self, x0, y0, x1, y1, c):
        for y in range(int(y0), int(y1) + 1):
            for x in range(int(x0), int(x1) + 1):
                self.set(x, y, c)

    def line(self, x0, y0, x1, y1, c, width=1):
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        r = (width - 1) // 2
        for i in range(steps + 1):
            t = i / steps
            x, y = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            if r:
                self.rect(x - r, y - r, x + r, y + r, c)
            else:
                self.set(x, y, c)

    def text(self, x, y, s, c, scale=2):
        """Top-left at (x, y); returns the width drawn."""
        cx = x
        for ch in s.upper():
            g = FONT.get(ch, FONT[" "])
            for row in range(5):
                for col in range(3):
                    if g[row * 3 + col] == "1":
                        self.rect(cx + col * scale, y + row * scale,
                                  cx + col * scale + scale - 1, y + row * scale + scale - 1, c)
            cx += 4 * scale
        return cx - x

    def png(self):
        rows = b"".join(b"\x00" + bytes(self.px[3 * y * self.w:3 * (y + 1) * self.w])
                        for y in range(self.h))

        def chunk(kind, data):
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
        return (b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
                + chunk(b"IEND", b""))


def fmt(v):
    return "0" if v == 0 else "%.4g" % v


def text_width(s, scale=2):
    return 4 * scale * len(s)


def plot_stdlib(panels, out, title):
    W, H = 1200, 800
    top = 30 if title else 0
    c = Canvas(W, H)
    if title:
        c.text(10, 8, title, BLACK)
    pw, ph = W // 2, (H - top) // 2
    for n, (name, train, events) in enumerate(panels):
        ox, oy = (n % 2) * pw, top + (n // 2) * ph
        left, right, ptop, bottom = ox + 80, ox + pw - 20, oy + 40, oy + ph - 40
        pts = train + events
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        if x1 == x0:
            x0, x1 = x0 - 1, x1 + 1
        if y1 == y0:
            pad = abs(y0) * 0.05 or 1.0
            y0, y1 = y0 - pad, y1 + pad
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

        def X(v):
            return left + (v - x0) / (x1 - x0) * (right - left)

        def Y(v):
            return bottom - (v - y0) / (y1 - y0) * (bottom - ptop)
        for i in range(1, 4):  # grid
            gy = ptop + i * (bottom - ptop) / 4
            c.line(left, gy, right, gy, GRID)
            gx = left + i * (right - left) / 4
            c.line(gx, ptop, gx, bottom, GRID)
        c.line(left, ptop, left, bottom, BLACK)
        c.line(left, bottom, right, bottom, BLACK)
        c.line(left, ptop, right, ptop, BLACK)
        c.line(right, ptop, right, bottom, BLACK)
        c.text(left, oy + 14, name, BLACK)
        # legend, right-aligned in the title row
        lx = right
        if events:
            lx -= text_width("EVAL") + 4
            c.text(lx, oy + 14, "EVAL", RED)
            lx -= 16
            c.rect(lx + 2, oy + 16, lx + 8, oy + 22, RED)
            lx -= 16
        if train:
            lx -= text_width("TRAIN") + 4
            c.text(lx, oy + 14, "TRAIN", BLUE)
            c.line(lx - 22, oy + 19, lx - 6, oy + 19, BLUE, 3)
        # axis ranges: y max/min at the left, x min/max under the axis
        for v, yy in ((y1 - pad, Y(y1 - pad)), (y0 + pad, Y(y0 + pad)),
                      ((y0 + y1) / 2, Y((y0 + y1) / 2))):
            s = fmt(v)
            c.text(left - 6 - text_width(s), yy - 5, s, GRAY)
            c.line(left - 4, yy, left, yy, BLACK)
        for v in (min(xs), max(xs)):
            s = fmt(v)
            tx = min(max(X(v) - text_width(s) / 2, left - 20), right - text_width(s))
            c.text(tx, bottom + 8, s, GRAY)
        c.text((left + right) / 2 - text_width("STEP") / 2, bottom + 22, "STEP", GRAY)
        # curves
        a = smoothing(train)
        if train:
            color = LIGHT if a else BLUE
            for (xa, ya), (xb, yb) in zip(train, train[1:]):
                c.line(X(xa), Y(ya), X(xb), Y(yb), color, 1 if a else 3)
            if len(train) == 1:
                c.rect(X(train[0][0]) - 2, Y(train[0][1]) - 2, X(train[0][0]) + 2, Y(train[0][1]) + 2, BLUE)
            if a:
                sm = ema(train, a)
                for (xa, ya), (xb, yb) in zip(sm, sm[1:]):
                    c.line(X(xa), Y(ya), X(xb), Y(yb), BLUE, 3)
        for (xa, ya), (xb, yb) in zip(events, events[1:]):
            c.line(X(xa), Y(ya), X(xb), Y(yb), RED, 1)
        for x, y in events:
            c.rect(X(x) - 3, Y(y) - 3, X(x) + 3, Y(y) + 3, RED)
    with open(out, "wb") as f:
        f.write(c.png())


def main(argv):
    ap = argparse.ArgumentParser(description="Plot a polaris metrics log (JSONL) to PNG.")
    ap.add_argument("log")
    ap.add_argument("--out", help="PNG path (default: LOG with .png)")
    ap.add_argument("--title", default=None, help="figure title (default: the log's file name)")
    ap.add_argument("--no-matplotlib", action="store_true", help="always use the stdlib PNG writer")
    args = ap.parse_args(argv)
    out = args.out or (os.path.splitext(args.log)[0] + ".png")
    title = args.title if args.title is not None else os.path.basename(args.log)
    try:
        panels = series(read_log(args.log))
        if not panels:
            raise InputError("%s: no numeric metrics to plot (loss, reward, accuracy, response_len, ...)" % args.log)
        use_mpl = not args.no_matplotlib
        if use_mpl:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                use_mpl = False
        tmp = out + ".tmp"
        try:
            (plot_matplotlib if use_mpl else plot_stdlib)(panels, tmp, title)
            os.replace(tmp, out)
        except OSError as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise InputError("%s: cannot write (%s)" % (out, e.strerror or e))
    except InputError as e:
        sys.stderr.write("error: %s\n" % e)
        return 1
    print("wrote %s (%s; panels: %s)" % (out, "matplotlib" if use_mpl else "stdlib png",
                                           ", ".join(p[0] for p in panels)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
