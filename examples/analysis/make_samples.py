#!/usr/bin/env python3
"""Small open-data-like NanoAOD files for the four-lepton analysis example, and a way into Rucio.

Three samples in the spirit of the DAC21 exercise (CMS open data, H→ZZ→4ℓ):

- ``SMHiggsToZZTo4L``: the signal, a Higgs boson of 125 GeV decaying to two Z bosons (one on shell,
  one off) and on to four leptons (4μ, 4e, 2e2μ); the four leptons' mass peaks near 125 GeV.
- ``ZZTo4mu``: the irreducible background, two on-shell Z bosons decaying to four muons (m4ℓ mostly
  above 180 GeV).
- ``Run2012B_DoubleMuParked``: a data-like mix, mostly Z→μμ events with two muons (and sometimes an
  extra electron), with a few signal-like and ZZ-like four-lepton events among them.

Each file holds a TTree ``Events`` with NanoAOD's branch names: ``nMuon`` and the jagged
``Muon_pt, Muon_eta, Muon_phi, Muon_mass, Muon_charge``; the same for ``Electron``. The kinematics
are made with a simple model (a boosted parent, isotropic two-body decays), not a detector; some
leptons are lost (below 5 GeV or outside the tracker) as in real events. Everything is seeded:
the same arguments give the same events.

    python make_samples.py OUTDIR [--files 3] [--events 2000]
    python make_samples.py OUTDIR --register user.alice:af.example.4l --rse SITE-A_SCRATCHDISK

``--register`` puts the files into Rucio as that dataset on that RSE with
``af_gateway_client.data.register_files`` (through the gateway named by ``AF_GATEWAY_URL``, with the
token at the WLCG discovery location, e.g. ``BEARER_TOKEN_FILE``); running it again registers nothing
twice. It prints one JSON line: the files made (name, sample, events) and the DIDs registered.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import types
import uuid
import zlib

import awkward as ak
import numpy as np
import uproot

SAMPLES = ("SMHiggsToZZTo4L", "ZZTo4mu", "Run2012B_DoubleMuParked")
M_Z, W_Z, M_H = 91.1876, 2.4952, 125.0
M_MU, M_E = 0.1056583745, 0.000510998950
#: NanoAOD's tracker acceptance and the lowest pt it keeps for these objects (GeV)
ETA_MAX = {"Muon": 2.4, "Electron": 2.5}
PT_MIN = 3.0


def _decay(rng, parent, m_parent, m1, m2):
    """Two-body decays, isotropic in the parent's rest frame: four-vectors (E, px, py, pz) of both daughters in the lab."""
    n = len(m_parent)
    p = np.sqrt(np.maximum((m_parent**2 - (m1 + m2) ** 2) * (m_parent**2 - (m1 - m2) ** 2), 0.0)) / (2 * m_parent)
    cos_t = rng.uniform(-1, 1, n)
    sin_t = np.sqrt(1 - cos_t**2)
    phi = rng.uniform(-np.pi, np.pi, n)
    d = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1) * p[:, None]
    out = []
    for sign, m in ((1, m1), (-1, m2)):
        rest = np.concatenate([np.sqrt(m**2 + p**2)[:, None], sign * d], axis=1)
        out.append(_boost(rest, parent))
    return out


def _boost(v, parent):
    """Four-vectors ``v`` given in the rest frame of ``parent`` (E, px, py, pz), in the lab."""
    b = parent[:, 1:] / parent[:, :1]
    b2 = np.sum(b**2, axis=1)
    gamma = 1 / np.sqrt(1 - b2)
    bp = np.sum(b * v[:, 1:], axis=1)
    g2 = np.where(b2 > 0, (gamma - 1) / np.where(b2 > 0, b2, 1), 0.0)
    energy = gamma * (v[:, 0] + bp)
    space = v[:, 1:] + (g2 * bp + gamma * v[:, 0])[:, None] * b
    return np.concatenate([energy[:, None], space], axis=1)


def _parents(rng, mass):
    """Parents of the given masses with a falling transverse momentum and a spread in rapidity, as at a hadron collider."""
    n = len(mass)
    pt = rng.exponential(25.0, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    y = rng.normal(0.0, 1.2, n)
    mt = np.sqrt(mass**2 + pt**2)
    return np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], axis=1)


def _breit_wigner(rng, n, mass, width, low, high):
    """Masses from a relativistic-ish Breit–Wigner, cut to [low, high]."""
    out = np.empty(0)
    while len(out) < n:
        m = mass + width / 2 * np.tan(rng.uniform(-np.pi / 2, np.pi / 2, 2 * n))
        out = np.concatenate([out, m[(m > low) & (m < high)]])
    return out[:n]


def _lepton_pairs(rng, z, m_lepton):
    """Z bosons (four-vectors and masses) to lepton pairs: (pt, eta, phi) of both and their charges (+, -)."""
    four, masses = z
    pos, neg = _decay(rng, four, masses, m_lepton, m_lepton)
    return [(_kinematics(pos), 1), (_kinematics(neg), -1)]


def _kinematics(v):
    px, py, pz = v[:, 1], v[:, 2], v[:, 3]
    pt = np.hypot(px, py)
    return pt, np.arcsinh(pz / np.maximum(pt, 1e-9)), np.arctan2(py, px)


def _zz(rng, n, m_parent=None):
    """n ZZ pairs: from a parent of the given masses (a Higgs: one Z off shell) or, without, two on-shell Z bosons."""
    if m_parent is None:
        m1 = _breit_wigner(rng, n, M_Z, W_Z, 70.0, 110.0)
        m2 = _breit_wigner(rng, n, M_Z, W_Z, 70.0, 110.0)
        m_parent = m1 + m2 + rng.exponential(60.0, n)  # the ZZ continuum from its threshold
    else:
        m1 = _breit_wigner(rng, n, M_Z, W_Z, 60.0, (m_parent.min() if n else M_H) - 13.0)
        m2 = np.minimum(rng.normal(28.0, 6.0, n).clip(12.0, None), m_parent - m1 - 1.0)  # the off-shell Z
    parent = _parents(rng, m_parent)
    z1, z2 = _decay(rng, parent, m_parent, m1, m2)
    return (z1, m1), (z2, m2)


class _Events:
    """Leptons of n events, collected per flavour as (event index, pt, eta, phi, charge) columns."""

    def __init__(self, n):
        self.n = n
        self.cols = {f: {k: [] for k in ("event", "pt", "eta", "phi", "charge")} for f in ("Muon", "Electron")}

    def add(self, flavour, events, leptons):
        for (pt, eta, phi), charge in leptons:
            c = self.cols[flavour]
            c["event"].append(events)
            c["pt"].append(pt)
            c["eta"].append(eta)
            c["phi"].append(phi)
            c["charge"].append(np.broadcast_to(np.asarray(charge, dtype=np.int32), (len(events),)))

    def branches(self, rng):
        """{"Muon": records (pt, eta, phi, mass, charge) per event, "Electron": the same}."""
        out = {}
        for flavour, c in self.cols.items():
            if c["event"]:
                cols = {k: np.concatenate(v) for k, v in c.items()}
            else:
                cols = {k: np.empty(0, dtype=np.int32 if k in ("event", "charge") else np.float64) for k in c}
            # resolution: a few per cent in pt, then what a detector keeps
            cols["pt"] = cols["pt"] * rng.normal(1.0, 0.015 if flavour == "Muon" else 0.025, len(cols["pt"]))
            kept = (cols["pt"] > PT_MIN) & (np.abs(cols["eta"]) < ETA_MAX[flavour])
            cols = {k: v[kept] for k, v in cols.items()}
            order = np.lexsort((-cols["pt"], cols["event"]))  # per event, by falling pt (as NanoAOD)
            cols = {k: v[order] for k, v in cols.items()}
            counts = np.bincount(cols["event"], minlength=self.n).astype(np.int32)
            fields = {k: cols[k].astype(np.float32) for k in ("pt", "eta", "phi")}
            fields["mass"] = np.full(len(cols["pt"]), M_MU if flavour == "Muon" else M_E, dtype=np.float32)
            fields["charge"] = cols["charge"].astype(np.int32)
            out[flavour] = ak.zip({k: ak.unflatten(v, counts) for k, v in fields.items()})
        return out


def _four_leptons(rng, ev, idx, m_parent, flavours):
    """ZZ→4ℓ for the events idx: flavours per event, 0 = 4μ, 1 = 4e, 2 = 2e2μ (Z1 to electrons), 3 = 2μ2e."""
    z1, z2 = _zz(rng, len(idx), m_parent)
    first = _lepton_pairs(rng, z1, M_MU)
    first_e = _lepton_pairs(rng, z1, M_E)
    second = _lepton_pairs(rng, z2, M_MU)
    second_e = _lepton_pairs(rng, z2, M_E)
    mu, el = ("Muon", first, second), ("Electron", first_e, second_e)
    for code, (z1_to, z2_to) in enumerate(((mu, mu), (el, el), (el, mu), (mu, el))):
        l1, l2 = (z1_to[0], z1_to[1]), (z2_to[0], z2_to[2])
        sel = flavours == code
        for flavour, pairs in (l1, l2):
            ev.add(flavour, idx[sel], [((pt[sel], eta[sel], phi[sel]), q) for (pt, eta, phi), q in pairs])


def make_events(sample: str, seed: int, n: int) -> dict:
    """The branches of n events of a sample, from a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    ev = _Events(n)
    idx = np.arange(n)
    if sample == "SMHiggsToZZTo4L":
        m_h = rng.normal(M_H, 1.0, n)  # the width a detector gives it
        _four_leptons(rng, ev, idx, m_h, rng.choice(4, n, p=[0.3, 0.25, 0.225, 0.225]))
    elif sample == "ZZTo4mu":
        _four_leptons(rng, ev, idx, None, np.zeros(n, dtype=int))
    elif sample == "Run2012B_DoubleMuParked":
        kind = rng.choice(3, n, p=[0.96, 0.02, 0.02])  # Z→μμ, H→4ℓ-like, ZZ→4μ-like
        dy = idx[kind == 0]
        m = _breit_wigner(rng, len(dy), M_Z, W_Z, 40.0, 150.0)
        ev.add("Muon", dy, [(k, q) for k, q in _lepton_pairs(rng, (_parents(rng, m), m), M_MU)])
        extra = dy[rng.random(len(dy)) < 0.1]  # a soft electron now and then: three leptons, not four
        ev.add("Electron", extra, [((rng.exponential(8.0, len(extra)) + 2.0, rng.normal(0, 1.2, len(extra)),
                                      rng.uniform(-np.pi, np.pi, len(extra))), rng.choice([-1, 1], len(extra)))])
        higgs = idx[kind == 1]
        _four_leptons(rng, ev, higgs, rng.normal(M_H, 1.0, len(higgs)), rng.choice(4, len(higgs)))
        zz = idx[kind == 2]
        _four_leptons(rng, ev, zz, None, np.zeros(len(zz), dtype=int))
    else:
        raise ValueError(f"unknown sample {sample!r}: one of {', '.join(SAMPLES)}")
    return ev.branches(rng)


#: when every file says it was written: with it and a UUID from the file's name, the same arguments give the same bytes
WRITTEN_ON = datetime.datetime(2026, 1, 1)


@contextlib.contextmanager
def _fixed_clock():
    """uproot stamps each file, key and basket with the time of writing: stop its clock for a moment, so that a
    file made again is the same file (Rucio keeps a name's content for good; a second --register is a no-op)."""
    import uproot.writing._cascade
    import uproot.writing._cascadetree
    import uproot.writing.writable

    clock = types.SimpleNamespace(datetime=types.SimpleNamespace(now=lambda: WRITTEN_ON))
    modules = (uproot.writing._cascade, uproot.writing._cascadetree, uproot.writing.writable)
    saved = [m.datetime for m in modules]
    for m in modules:
        m.datetime = clock
    try:
        yield
    finally:
        for m, d in zip(modules, saved):
            m.datetime = d


def write_file(path: str, branches: dict) -> None:
    """A NanoAOD-style TTree "Events": a record per flavour becomes nMuon and Muon_pt, Muon_eta, … sharing it."""
    file_uuid = uuid.uuid5(uuid.NAMESPACE_URL, "af-gateway-example:" + os.path.basename(path))
    with _fixed_clock(), uproot.recreate(path, uuid_function=lambda: file_uuid) as f:
        # mktree + extend writes a TTree (assigning a record to f["Events"] would write an RNTuple in uproot 5.7)
        tree = f.mktree("Events", {k: v.type for k, v in branches.items()}, title="Events")
        tree.extend(branches)


def seed_of(sample: str, index: int) -> int:
    return zlib.crc32(f"{sample}.{index}".encode())


def make_samples(outdir: str, files: int = 3, events: int = 2000) -> list[dict]:
    """Writes files × samples ROOT files into outdir; returns [{path, name, sample, events}]."""
    os.makedirs(outdir, exist_ok=True)
    made = []
    for sample in SAMPLES:
        for i in range(files):
            name = f"{sample}.{i}.root"
            path = os.path.join(outdir, name)
            write_file(path, make_events(sample, seed_of(sample, i), events))
            made.append({"path": path, "name": name, "sample": sample, "events": events})
    return made


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", help="where to write the ROOT files")
    ap.add_argument("--files", type=int, default=3, help="files per sample (default 3)")
    ap.add_argument("--events", type=int, default=2000, help="events per file (default 2000)")
    ap.add_argument("--register", metavar="SCOPE:DATASET", help="put the files into Rucio as this dataset")
    ap.add_argument("--rse", default="SITE-A_SCRATCHDISK", help="the RSE to write them to (default SITE-A_SCRATCHDISK)")
    ap.add_argument("--instance", help="the gateway's Rucio instance (default: its only one)")
    ap.add_argument("--lifetime", type=int, help="seconds a rule of yours keeps the dataset (default: no rule)")
    args = ap.parse_args(argv)
    if not (1 <= args.files <= 100 and 1 <= args.events <= 1_000_000):
        ap.error("--files is 1 to 100, --events 1 to 1,000,000")
    made = make_samples(args.outdir, args.files, args.events)
    dids = []
    if args.register:
        from af_gateway_client import data

        dids = data.register_files([m["path"] for m in made], dataset=args.register, rse=args.rse, instance=args.instance,
                                   lifetime=args.lifetime)
    print(json.dumps({"files": [{k: m[k] for k in ("name", "sample", "events")} for m in made], "dataset": args.register, "dids": dids}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
