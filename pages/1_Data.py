"""Data: choose the dataset, see what it holds, choose the split protocol, preview preprocessing.

The chosen dataset and protocol live in ``artifacts/workspace.json`` (they survive a reload);
the scan is stored under ``artifacts/scans/``. Everything computed here is in
``cnmc_core.data.summary``.
"""

from __future__ import annotations

import os

import streamlit as st

from cnmc_core.analysis.run_charts import subject_counts_figure
from cnmc_core.contracts import PROTOCOLS, SPLIT_PROTOCOLS
from cnmc_core.data.summary import (
    CLASS_LABELS,
    class_counts,
    preprocessing_steps,
    sample_images,
    scan_cached,
    scan_is_stored,
    split_summary,
    subject_counts,
    thumbnail,
    tree_signature,
)
from cnmc_core.demo import demo_data_root, demo_dataset_exists
from cnmc_core.exceptions import CnmcError
from cnmc_core.workspace.settings import (
    chosen_dataset,
    chosen_protocol,
    set_chosen_dataset,
    set_chosen_protocol,
)
from page_gate import can, page_start, workspace_root

ROOT = workspace_root()


@st.cache_data(show_spinner=False, max_entries=4)
def load_scan(path: str, root: str, signature: str):
    """The stored scan (``signature`` keys the cache: a changed folder is read again)."""
    result, _ = scan_cached(path, root)
    return result.manifest, result.skipped, list(result.notes), str(result.labels_csv or "")


@st.cache_data(show_spinner=False, ttl=10, max_entries=8)
def signature_of(path: str) -> str:
    """The dataset folder's file signature, walked at most every 10 s (each widget click reruns
    the page; C-NMC has 15,000 files)."""
    return tree_signature(path)


@st.cache_data(show_spinner=False, max_entries=64)
def load_thumbnail(path: str, size: int, mtime: float):
    return thumbnail(path, size)


@st.cache_data(show_spinner=False, max_entries=16)
def load_split_summary(path: str, signature: str, protocol: str, seed: int, _manifest):
    return split_summary(_manifest, protocol, seed=seed)


def scan_with_progress(path: str) -> bool:
    """Scan ``path`` with a progress bar unless the stored scan is fresh; False (and an error
    on the page) when it cannot be scanned."""
    try:
        signature = signature_of(path)
        if not scan_is_stored(path, ROOT, signature):
            bar = st.progress(0.0, text=f"Scanning {path}")
            scan_cached(path, ROOT, progress=lambda done, total: bar.progress(
                done / max(total, 1), text=f"Checking images: {done} of {total}"))
            bar.empty()
    except CnmcError as exc:
        st.error(f"{exc}")
        return False
    except OSError as exc:
        st.error(f"Cannot read {path}: {exc}. Check the path and its permissions.")
        return False
    return True


def dataset_chooser(current: str | None, actor) -> None:
    st.subheader("Dataset")
    if current:
        st.markdown(f"Current dataset: `{current}`")
    elif not can(actor, "configure"):
        st.info("No dataset chosen yet; a trainer chooses it here.")
    else:
        st.info("No dataset chosen yet. Create the demo dataset on the Home page, or give a C-NMC folder below.")
    if not can(actor, "configure"):
        return
    with st.form("dataset_form", border=False):
        text = st.text_input(
            "C-NMC folder or manifest CSV", value=current or "",
            placeholder="/data/C-NMC_Leukemia  (Kaggle mirror, TCIA package, or ROOT/{all,hem}/)",
            help="Any of the C-NMC layouts, searched recursively; or a manifest CSV written by "
                 "`python -m cnmc_core scan ROOT --out manifest.csv`.")
        submitted = st.form_submit_button("Use this dataset", type="primary", icon=":material/folder_open:")
    if submitted:
        path = text.strip()
        if not path:
            st.error("Type the path of a dataset folder (or a manifest CSV) first.")
        elif not os.path.exists(os.path.expanduser(path)):
            st.error(f"`{path}` does not exist on this machine. Type the full path of the folder that "
                     "holds the C-NMC images (the path is read by the server running the dashboard).")
        elif scan_with_progress(path):
            set_chosen_dataset(path, ROOT, actor=actor)
            st.rerun()
    if demo_dataset_exists(ROOT) and current != str(demo_data_root(ROOT).resolve()):
        if st.button("Use the demo dataset instead", icon=":material/science:"):
            set_chosen_dataset(demo_data_root(ROOT), ROOT, actor=actor)
            st.rerun()


def contents(manifest, skipped, notes, labels_csv) -> None:
    labelled = manifest[manifest["y"] >= 0]
    subjects = labelled.loc[labelled["subject"] != "", ["subject", "label"]].drop_duplicates()
    c = st.columns(5)
    c[0].metric("Images", f"{len(manifest):,}")
    c[1].metric("ALL (cancer)", f"{int((manifest['y'] == 1).sum()):,}")
    c[2].metric("HEM (normal)", f"{int((manifest['y'] == 0).sum()):,}")
    c[3].metric("Subjects (ALL / HEM)", f"{int((subjects['label'] == 'all').sum())} / "
                                        f"{int((subjects['label'] == 'hem').sum())}")
    c[4].metric("Skipped files", f"{len(skipped):,}")

    left, right = st.columns([1, 1])
    left.markdown("**Images by source and class**")
    left.dataframe(class_counts(manifest), width="stretch")
    by_subject = subject_counts(manifest)
    right.markdown("**Images per subject**")
    if by_subject.empty:
        right.info("No labelled image.")
    else:
        fig = subject_counts_figure(by_subject)
        right.plotly_chart(fig, width="stretch", key="subjects_chart")
    if labels_csv:
        st.caption(f"Preliminary-phase labels read from `{labels_csv}`.")
    for note in notes:
        st.caption(note)
    if len(skipped):
        with st.expander(f"{len(skipped)} skipped file(s) and why"):
            st.dataframe(skipped.groupby("reason").size().rename("files").reset_index(), hide_index=True)
            st.dataframe(skipped, hide_index=True, width="stretch")


def protocol_chooser(dataset: str, signature: str, manifest, actor) -> None:
    st.subheader("Split protocol")
    names = list(SPLIT_PROTOCOLS)
    current = chosen_protocol(ROOT)

    def save():  # a viewer looks at the other protocols without changing the workspace's
        if can(actor, "configure"):
            set_chosen_protocol(st.session_state["protocol_choice"], ROOT, actor=actor)

    protocol = st.radio(
        "How images are split into train / val / test (new runs on the Train page start with this)",
        names, index=names.index(current), key="protocol_choice", on_change=save, horizontal=True,
        format_func=lambda n: PROTOCOLS[n].label(),
        captions=[PROTOCOLS[n].description for n in names])
    if PROTOCOLS[protocol].leaky:
        st.warning("**The `paper` protocol leaks subjects.** It splits by image, so cells of the same "
                   "person land in train and test; the model can recognise the person instead of the "
                   "disease and the score is inflated (subject-disjoint results on C-NMC are about "
                   "0.89-0.91 weighted F1). Use it only to reproduce the paper; every score made with it "
                   "is labelled leaky.", icon=":material/warning:")
    try:
        table, leak = load_split_summary(dataset, signature, protocol, 0, manifest)
    except CnmcError as exc:
        st.error(f"This dataset cannot be split with the `{protocol}` protocol: {exc}")
        return
    left, right = st.columns([3, 2])
    left.dataframe(table, width="stretch")
    if leak["shared_train_test"]:
        right.error(f"{leak['shared_train_test']} subject(s) have cells in both train and test; "
                    f"{leak['test_images_of_train_subjects']} of {int(table.loc['test', 'images'])} test "
                    "images come from people seen in training.", icon=":material/group:")
    else:
        right.success("Subject-disjoint: no person has cells in both train and test.",
                      icon=":material/verified:")
    right.caption("Seed 0 shown; each run records its own seed and protocol.")


def gallery(manifest) -> None:
    st.subheader("Sample gallery")
    seed = st.session_state.setdefault("gallery_seed", 0)
    if st.button("Show other samples", icon=":material/shuffle:"):
        st.session_state["gallery_seed"] = seed = seed + 1
    samples = sample_images(manifest, per_class=6, seed=seed)
    if samples.empty:
        st.info("No labelled image to show.")
        return
    for label, title in (("all", "ALL (cancer)"), ("hem", "HEM (normal)")):
        part = samples[samples["label"] == label]
        if part.empty:
            continue
        st.markdown(f"**{title}**")
        cols = st.columns(6)
        for col, row in zip(cols, part.itertuples()):
            try:
                col.image(load_thumbnail(row.path, 160, os.path.getmtime(row.path)),
                          caption=f"subject {row.subject or '?'}", width="stretch")
            except (CnmcError, OSError) as exc:
                col.error(f"Cannot show {row.image_id}: {exc}")
    return samples


def preview(manifest, samples) -> None:
    st.subheader("Preprocessing preview")
    st.caption("The paper's preprocessing: crop to the cell (threshold at 1), pad to a square with black, "
               "optional CLAHE on the Y channel, resize to the model's input.")
    labelled = manifest[manifest["y"] >= 0]
    options = list(samples["image_id"]) if samples is not None and len(samples) else list(labelled["image_id"].head(12))
    if not options:
        st.info("No image to preview.")
        return
    left, right = st.columns([3, 1])
    labels = dict(zip(labelled["image_id"], labelled["label"].map(CLASS_LABELS)))
    image_id = left.selectbox("Image (one of the samples above)", options, key="preview_image",
                              format_func=lambda i: f"{i} - {labels.get(i, 'unlabelled')}")
    size = right.selectbox("Model input size", [64, 128, 224, 300], index=2, key="preview_size")
    path = manifest.loc[manifest["image_id"] == image_id, "path"].iloc[0]
    try:
        steps = preprocessing_steps(path, size)
    except CnmcError as exc:
        st.error(f"{exc}")
        return
    for col, (title, image) in zip(st.columns(len(steps)), steps):
        col.image(image, caption=title, width="stretch")


def main() -> None:
    actor = page_start()
    st.title("Data")
    dataset = chosen_dataset(ROOT)
    dataset_chooser(dataset, actor)
    if not dataset:
        return
    if not os.path.exists(dataset):
        st.error(f"The chosen dataset `{dataset}` does not exist any more. Give another folder above"
                 + (" or use the demo dataset." if demo_dataset_exists(ROOT) else "."))
        return
    if not scan_with_progress(dataset):
        return
    signature = signature_of(dataset)
    manifest, skipped, notes, labels_csv = load_scan(dataset, str(ROOT), signature)
    contents(manifest, skipped, notes, labels_csv)
    protocol_chooser(dataset, signature, manifest, actor)
    samples = gallery(manifest)
    preview(manifest, samples)


main()
