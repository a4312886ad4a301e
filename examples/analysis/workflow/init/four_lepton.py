#!/usr/bin/env python3
"""The steps of the four-lepton workflow (../workflow.yml): the selection of ../../four-lepton.ipynb.

    four_lepton.py select --output m4l.root [--ca-dir DIR] PFN   the m4l histograms of one file
    four_lepton.py merge --output merged.root FILE...            their sum

``select`` reads the file with ``uproot.open(pfn, **data.uproot_options(pfn))``: the token is found at
the WLCG discovery location of the account the step runs as, read again for each request. Leptons:
muons pT > 5 GeV, |η| < 2.4; electrons pT > 7 GeV, |η| < 2.5. Events: exactly four of them as 4μ, 4e
or 2e2μ, each flavour's charges adding up to zero; m4ℓ is their mass. The sample is the file name's
first part (``ZZTo4mu.1.root``: ZZTo4mu). Each output holds one TH1 ``m4l_<sample>`` per sample
(60 bins, 70 to 250 GeV, with under- and overflow), so files add up bin by bin.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlsplit

import numpy as np

SAMPLES = ["SMHiggsToZZTo4L", "ZZTo4mu", "Run2012B_DoubleMuParked"]
BINS, LOW, HIGH = 60, 70.0, 250.0
BRANCHES = [f"{flavour}_{k}" for flavour in ("Muon", "Electron") for k in ("pt", "eta", "phi", "mass", "charge")]


def new_histogram():
    import hist

    return hist.Hist(hist.axis.Regular(BINS, LOW, HIGH, name="m4l", label="m4l [GeV]"))


def four_lepton_mass(events) -> np.ndarray:
    """m4ℓ of the events the selection keeps."""
    import awkward as ak

    def leptons(flavour, pt_min, eta_max):
        lep = ak.zip({k: ak.values_astype(events[f"{flavour}_{k}"], np.float64) for k in ("pt", "eta", "phi", "mass", "charge")})
        return lep[(lep.pt > pt_min) & (abs(lep.eta) < eta_max)]

    mu, el = leptons("Muon", 5.0, 2.4), leptons("Electron", 7.0, 2.5)
    n_mu, n_el = ak.num(mu), ak.num(el)
    four = (n_mu + n_el == 4) & (n_mu % 2 == 0) & (ak.sum(mu.charge, axis=1) == 0) & (ak.sum(el.charge, axis=1) == 0)
    lep = ak.concatenate([mu[four], el[four]], axis=1)
    px = ak.sum(lep.pt * np.cos(lep.phi), axis=1)
    py = ak.sum(lep.pt * np.sin(lep.phi), axis=1)
    pz = ak.sum(lep.pt * np.sinh(lep.eta), axis=1)
    e = ak.sum(np.sqrt((lep.pt * np.cosh(lep.eta)) ** 2 + lep.mass**2), axis=1)
    return np.sqrt(np.maximum(ak.to_numpy(e**2 - px**2 - py**2 - pz**2), 0.0))


def write(path: str, histograms: dict) -> None:
    import uproot

    with uproot.recreate(path) as f:
        for sample in SAMPLES:
            f[f"m4l_{sample}"] = histograms[sample]


def select(pfn: str, output: str) -> None:
    import uproot
    from af_gateway_client import data

    sample = os.path.basename(urlsplit(pfn).path).split(".")[0]
    if sample not in SAMPLES:
        raise SystemExit(f"{pfn}: not a file of the samples {', '.join(SAMPLES)}")
    with uproot.open(pfn, **data.uproot_options(pfn)) as f:
        tree = f["Events"]
        events = tree.arrays(BRANCHES)
    histograms = {s: new_histogram() for s in SAMPLES}
    m4l = four_lepton_mass(events)
    histograms[sample].fill(m4l=m4l)
    write(output, histograms)
    print(f"{pfn}: {len(events)} events, {len(m4l)} with four leptons ({sample})")


def merge(inputs: list[str], output: str) -> None:
    import uproot

    total = {s: new_histogram() for s in SAMPLES}
    for path in inputs:
        with uproot.open(path) as f:
            for s in SAMPLES:
                total[s].view(flow=True)[...] += f[f"m4l_{s}"].values(flow=True)  # counts, bin by bin with the flow bins
    write(output, total)
    print(f"{len(inputs)} files: " + ", ".join(f"{s} {total[s].sum(flow=True):.0f}" for s in SAMPLES))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("select", help="the m4l histograms of one file")
    s.add_argument("pfn")
    s.add_argument("--output", required=True)
    s.add_argument("--ca-dir", default="", help="a hashed directory of the storage's CA (default: the system's store)")
    m = sub.add_parser("merge", help="add histogram files up")
    m.add_argument("inputs", nargs="+")
    m.add_argument("--output", required=True)
    args = ap.parse_args(argv)
    if args.command == "select":
        if args.ca_dir:
            os.environ["X509_CERT_DIR"] = args.ca_dir
        select(args.pfn, args.output)
    else:
        merge(args.inputs, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
