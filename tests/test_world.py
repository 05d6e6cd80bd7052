"""The WORLD switch: the toy world by default on a CPU; a real-model world from a folder, tested offline."""
from types import SimpleNamespace

import pytest
import torch

from asyrp_edu import registry, world
from asyrp_edu.intervals import REFERENCE_DIR
from asyrp_edu.losses import text_direction
from asyrp_edu.models import CELEBA_HQ_LAYOUT_SMALL, build_unet
from asyrp_edu.tiny_clip import load_tiny_clip


def test_default_is_toy_without_a_gpu():
    assert world.default_world() == ("celeba_hq" if torch.cuda.is_available() else "toy")


def test_a_real_world_from_a_folder_uses_the_authors_tables(tmp_path, monkeypatch):
    torch.manual_seed(0)  # the same random weights whichever tests ran before (the round-off below depends on them)
    build_unet(CELEBA_HQ_LAYOUT_SMALL).save_pretrained(tmp_path / "unet")
    monkeypatch.setattr(registry, "load_clip", lambda name, device: load_tiny_clip())  # no real CLIP offline
    with pytest.warns(UserWarning, match="CelebA-HQ LPIPS tables"):  # it says how to measure the model's own
        w = world.load_world(str(tmp_path), device="cpu")
    assert w.image_size == 32 and w.num_steps == 40
    t_edit, t_boost = w.intervals_for("a sad cartoon face", "a smiling cartoon face")
    # the paper's rules read straight off the authors' files: the first t reaching 0.33·cos, and 1.2
    cosine = text_direction(w.clip.encode_text, "a sad cartoon face", "a smiling cartoon face")[1]
    assert t_edit == _first_t_reaching(REFERENCE_DIR / "celeba_LPIPS_distance_x0_t.tsv", 0.33 * cosine)
    assert t_boost == _first_t_reaching(REFERENCE_DIR / "celeba_LPIPS_distance_x.tsv", 1.2) == 167
    assert 0 < t_boost < t_edit < 1000
    with pytest.raises(KeyError, match="smiling"):
        w.editor("no such edit")
    # below t_boost both runs get the same η = 1 noise, so an editor that adds Δh = 0 changes no pixel
    from asyrp_edu.editing import ConstantDeltaH
    from asyrp_edu.hspace import h_shape

    monkeypatch.setattr(w, "editor", lambda edit: (ConstantDeltaH(h_shape(w.unet)), 600, 300))
    check = world.check_editor(w, "smiling", "a sad cartoon face", "a smiling cartoon face", n=2)
    # round-off, grown over the steps: 6e-5 on one 2-core CPU, 4e-3 on an AVX2 EPYC;
    # each run with its own noise below t_boost: 0.23 (0.17 on the first CPU)
    assert check["t_boost"] == 300 and check["mean_pixel_change"] < 2e-2


def test_a_folder_holding_an_authors_model_keeps_its_editors_and_tables(tmp_path, monkeypatch, recwarn):
    """load_world(folder, model="celeba_hq"): a downloaded copy of google/ddpm-celebahq-256 is still that model."""
    build_unet(CELEBA_HQ_LAYOUT_SMALL).save_pretrained(tmp_path / "unet")
    monkeypatch.setattr(registry, "load_clip", lambda name, device: load_tiny_clip())  # no real CLIP offline
    w = world.load_world(str(tmp_path), device="cpu", model="celeba_hq")
    assert w.name == "celeba_hq" and not [w for w in recwarn if "LPIPS tables" in str(w.message)]
    assert w.edit_table.distance == world.reference_table("celeba", "x0_t").distance
    assert registry.official_editor_file("smiling", w.name)  # before: "the authors released no editors for 'tmp…'"
    for name, model in ((str(tmp_path), "nope"), ("celeba_hq", "celeba_hq")):
        with pytest.raises(ValueError, match="a local folder holds"):
            world.load_world(name, device="cpu", model=model)


def test_a_folder_named_like_a_built_in_world_is_not_that_world(tmp_path, monkeypatch):
    """A model folder called "toy" gets neither the toy world's faces and editors nor the steering notebooks' set."""
    build_unet(CELEBA_HQ_LAYOUT_SMALL).save_pretrained(tmp_path / "toy" / "unet")
    monkeypatch.setattr(registry, "load_clip", lambda name, device: load_tiny_clip())
    with pytest.warns(UserWarning, match="CelebA-HQ LPIPS tables"):
        w = world.load_world(str(tmp_path / "toy"), device="cpu")
    assert w.name == str((tmp_path / "toy").resolve()) and w.name != world.TOY
    with pytest.raises(KeyError, match="released no editors"):
        w.editor("smiling")
    # the steering notebooks' CelebA-HQ editors are not offered to another of the authors' models
    assert world.World.live_edits(SimpleNamespace(name="celeba_hq")) == world.LIVE_EDITS["real"]
    with pytest.raises(ValueError, match="WORLD = 'celeba_hq'"):
        world.World.live_edits(SimpleNamespace(name="church"))


def test_toy_editors_follow_the_unets_device_and_dtype():
    """f_t computes where and in what precision the U-Net does (a GPU, a .half() model; here float64, which keeps the
    weights' fingerprint), for scenes and single editors alike."""
    w = world.load_world("toy", device="cpu")
    w.unet.double()
    editors = w.scene_editors(("smiling",))
    assert next(editors["smiling"][0].parameters()).dtype == torch.float64
    assert next(w.editor("glasses")[0].parameters()).dtype == torch.float64


def test_when_the_paper_rules_cross_boosting_starts_where_editing_ends(monkeypatch):
    """Church's tables give t_boost 293; a text cosine of 0.5 gives t_edit 223, and Intervals needs t_boost ≤ t_edit."""
    import asyrp_edu.losses

    church = world.World("church", None, None, SimpleNamespace(encode_text=None), "cpu",
                         edit_table=world.reference_table("church", "x0_t"),
                         boost_table=world.reference_table("church", "x"))
    monkeypatch.setattr(asyrp_edu.losses, "text_direction", lambda encode, source, target: (None, 0.5))
    assert world.t_boost_from_table(church.boost_table) == 293
    assert church.intervals_for("a church", "a gothic church") == (223, 223)
    monkeypatch.setattr(asyrp_edu.losses, "text_direction", lambda encode, source, target: (None, 0.9))
    t_edit, t_boost = church.intervals_for("a church", "a gothic church")
    assert t_boost == 293 < t_edit


def _first_t_reaching(path, threshold: float) -> int:
    """The smallest t of a two-column TSV whose value is ≥ threshold, parsed without the library."""
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return min(int(t) for t, d in rows if float(d) >= threshold)


def test_clip_judge_reads_the_edit_direction_on_ground_truth_faces():
    """Outside the toy world CLIP along ΔT stands in for the judge; on toy faces it must order them by the truth."""
    from asyrp_edu import toy

    judge = world.ClipJudge(load_tiny_clip(), {"smiling": ("a sad cartoon face", "a smiling cartoon face")})
    attrs = toy.sample_attributes(16, seed=4)
    sad = toy.render({**attrs, "mouth": torch.full((16,), -0.9)})
    smiling = toy.render({**attrs, "mouth": torch.full((16,), 0.9)})
    before, after = judge(sad)["smiling"], judge(smiling)["smiling"]
    assert before.shape == (16,)
    assert (after > before).float().mean() >= 0.9  # the same faces, only the mouth changed


def test_toy_world_measures_its_tables_only_when_asked():
    w = world.load_world("toy", device="cpu")
    assert w.edit_table is None  # loading stays fast for the notebooks that never ask
    t_edit, t_boost = w.intervals_for("a sad cartoon face", "a smiling cartoon face")
    assert w.edit_table is not None and 0 < t_boost <= t_edit < 1000
    cosine = text_direction(w.clip.encode_text, "a sad cartoon face", "a smiling cartoon face")[1]
    d = dict(zip(w.edit_table.t, w.edit_table.distance))  # t_edit is the first t whose P_t is 0.33·cos away
    assert d[t_edit] >= 0.33 * cosine and all(v < 0.33 * cosine for t, v in d.items() if t < t_edit)
    b = dict(zip(w.boost_table.t, w.boost_table.distance))  # t_boost the first t whose x_t is 1.2 away
    assert b[t_boost] >= 1.2 and all(v < 1.2 for t, v in b.items() if t < t_boost)


def test_each_world_of_notebook_00_has_a_released_first_edit_with_prompts():
    """00's first edit must exist for every world its table offers: smiling, a gothic church, a princess bedroom."""
    for name, edit in world.FIRST_EDIT.items():
        if name == world.TOY:
            continue
        assert edit in world.OFFICIAL_PROMPTS, name
        assert registry.official_editor_file(edit, name) in registry.official_editor_sums(), name
    assert set(world.FIRST_EDIT) == {world.TOY, *[k for k, v in registry.DDPMS.items() if v.editor_suffix]}
