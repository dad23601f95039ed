#!/usr/bin/env python3
"""The engine issue's "PyTorch eager" baseline, run on this machine.

The SD 1.5 UNet written as diffusers' UNet2DConditionModel runs it (the same
modules, the same op sequence; attention as diffusers' AttnProcessor on torch
1.13: baddbmm with beta 0, softmax in the scores' dtype, bmm), with random
weights, in eager mode, on Debian's PyTorch (python3-torch, the same libtorch
doppel links). diffusers itself is not installable here (no PyPI), so this is
written from its architecture. Prints one JSON line per figure, like bench/.

  /usr/bin/python3 bench/pytorch_eager_baseline.py --dtype bf16 --size 512
"""
import argparse
import json
import math
import os
import time

import torch
from torch import nn
from torch.nn import functional as F


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout, temb=1280):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(32, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.shortcut(x) if self.shortcut is not None else x) + h


class Attention(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def split(self, x):
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).permute(0, 2, 1, 3).reshape(
            b * self.heads, n, c // self.heads)

    def forward(self, x, context=None):
        context = x if context is None else context
        q, k, v = self.split(self.to_q(x)), self.split(self.to_k(context)), self.split(
            self.to_v(context))
        empty = torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype)
        scores = torch.baddbmm(empty, q, k.transpose(-1, -2), beta=0, alpha=self.scale)
        out = torch.bmm(scores.softmax(dim=-1).to(q.dtype), v)
        b = x.shape[0]
        out = out.reshape(b, self.heads, -1, out.shape[-1]).permute(0, 2, 1, 3).reshape(
            b, -1, self.heads * out.shape[-1])
        return self.to_out(out)


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, context_dim=768):
        super().__init__()
        self.norm_in = nn.GroupNorm(32, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim, dim, heads)
        self.norm2, self.attn2 = nn.LayerNorm(dim), Attention(dim, context_dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.ff_in, self.ff_out = nn.Linear(dim, dim * 8), nn.Linear(dim * 4, dim)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        t = self.proj_in(self.norm_in(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        t = self.attn1(self.norm1(t)) + t
        t = self.attn2(self.norm2(t), context) + t
        hidden, gate = self.ff_in(self.norm3(t)).chunk(2, dim=-1)
        t = self.ff_out(hidden * F.gelu(gate)) + t
        return self.proj_out(t.reshape(b, h, w, c).permute(0, 3, 1, 2)) + x


class UNet(nn.Module):
    """SD 1.5: channels 320/640/1280/1280, 2 layers down, 3 up, 8 heads."""

    def __init__(self):
        super().__init__()
        ch, heads = [320, 640, 1280, 1280], 8
        self.time_1, self.time_2 = nn.Linear(320, 1280), nn.Linear(1280, 1280)
        self.conv_in = nn.Conv2d(4, 320, 3, padding=1)
        self.down, skips, cin = nn.ModuleList(), [320], 320
        for level, cout in enumerate(ch):
            for _ in range(2):
                attn = TransformerBlock(cout, heads) if level < 3 else None
                self.down.append(nn.ModuleList([ResnetBlock(cin, cout), attn]))
                skips.append(cout)
                cin = cout
            if level < 3:
                self.down.append(nn.Conv2d(cout, cout, 3, stride=2, padding=1))
                skips.append(cout)
        self.mid = nn.ModuleList(
            [ResnetBlock(1280, 1280), TransformerBlock(1280, heads), ResnetBlock(1280, 1280)])
        self.up = nn.ModuleList()
        for level, cout in reversed(list(enumerate(ch))):
            for i in range(3):
                attn = TransformerBlock(cout, heads) if level < 3 else None
                upsample = nn.Conv2d(cout, cout, 3, padding=1) if level > 0 and i == 2 else None
                self.up.append(nn.ModuleList([ResnetBlock(cin + skips.pop(), cout), attn, upsample]))
                cin = cout
        self.norm_out, self.conv_out = nn.GroupNorm(32, 320), nn.Conv2d(320, 4, 3, padding=1)

    def forward(self, x, t, context):
        freqs = torch.exp(-math.log(10000) * torch.arange(160, dtype=torch.float32) / 160)
        angles = t[:, None].float() * freqs[None]
        temb = torch.cat([torch.cos(angles), torch.sin(angles)], -1).to(x.dtype)
        temb = self.time_2(F.silu(self.time_1(temb)))
        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            if isinstance(block, nn.Conv2d):
                h = block(h)
            else:
                h = block[0](h, temb)
                if block[1] is not None:
                    h = block[1](h, context)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, temb), context), temb)
        for resnet, attn, upsample in self.up:
            h = resnet(torch.cat([h, skips.pop()], 1), temb)
            if attn is not None:
                h = attn(h, context)
            if upsample is not None:
                h = upsample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # Debian's build starts with one
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.manual_seed(0)
    unet = UNet().to(dtype).eval()
    latent = args.size // 8
    x = torch.randn(2, 4, latent, latent, dtype=dtype)  # CFG: uncond + cond
    context = torch.randn(2, 77, 768, dtype=dtype)
    t = torch.tensor([500, 500])
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            unet(x, t, context)
            times.append(time.perf_counter() - start)
    times = sorted(times[1:])
    print(json.dumps({"figure": "pytorch_eager_unet_step_cfg_batch2", "dtype": args.dtype,
                      "size": args.size, "threads": torch.get_num_threads(),
                      "torch": torch.__version__,
                      "parameters": sum(p.numel() for p in unet.parameters()),
                      "seconds_per_step": times[len(times) // 2]}), flush=True)


if __name__ == "__main__":
    main()
