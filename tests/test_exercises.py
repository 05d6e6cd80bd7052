"""The exercise checks accept the right answer and explain the typical wrong ones."""
import torch

from asyrp_edu import exercises


def test_right_answers_pass():
    assert exercises.check_alpha_bar(lambda b: torch.cumprod(1 - b, 0))
    assert exercises.check_q_sample(lambda x0, t, e, ab: ab[t].view(-1, 1, 1, 1).sqrt() * x0
                                    + (1 - ab[t].view(-1, 1, 1, 1)).sqrt() * e)
    assert exercises.check_predict_x0(lambda x, e, a: (x - (1 - a) ** 0.5 * e) / a ** 0.5)
    assert exercises.check_direction_to_xt(lambda e, ap, s: (1 - ap - s ** 2) ** 0.5 * e)


def test_wrong_answers_fail_with_a_reason():
    v = exercises.check_predict_x0(lambda x, e, a: (x - (1 - a) ** 0.5 * e) / a)
    assert not v and "sqrt(alpha_bar_t)" in v.message
    v = exercises.check_direction_to_xt(lambda e, ap, s: (1 - ap) ** 0.5 * e)
    assert not v and "σ_t" in v.message
    v = exercises.check_alpha_bar(lambda b: torch.cumprod(b, 0))
    assert not v and "1 − β" in v.message
    v = exercises.check_q_sample(lambda x0, t, e, ab: None)
    assert not v and "None" in v.message
    assert repr(v).startswith("❌")


def test_asymmetric_step_check():
    def right(x, e, e_edit, a, a_prev):
        return a_prev ** 0.5 * (x - (1 - a) ** 0.5 * e_edit) / a ** 0.5 + (1 - a_prev) ** 0.5 * e

    def symmetric(x, e, e_edit, a, a_prev):
        return right(x, e_edit, e_edit, a, a_prev)

    assert exercises.check_asymmetric_step(right)
    v = exercises.check_asymmetric_step(symmetric)
    assert not v and "symmetric" in v.message


def test_directional_loss_check():
    import torch.nn.functional as F

    def right(e_edit, e_src, dT):
        return 1 - F.cosine_similarity(F.normalize(e_edit, dim=-1) - F.normalize(e_src, dim=-1), dT[None], dim=-1)

    assert exercises.check_directional_loss(right)
    v = exercises.check_directional_loss(lambda a, b, d: 1 - right(a, b, d))
    assert not v and "similarity" in v.message
    v = exercises.check_directional_loss(lambda a, b, d: 1 - F.cosine_similarity(a - b, d[None], dim=-1))
    assert not v and "normalise" in v.message


def test_t_edit_check():
    def right(ts, ds, cos):
        return next(t for t, d in zip(ts, ds) if d >= 0.33 * cos)

    assert exercises.check_t_edit(right)
    v = exercises.check_t_edit(lambda ts, ds, cos: next(t for t, d in zip(ts, ds) if d >= 0.33))
    assert not v and "text cosine" in v.message
    v = exercises.check_t_edit(lambda ts, ds, cos: 500.0)
    assert not v and "int" in v.message


def test_step_scale_and_mix_checks():
    assert exercises.check_step_scale(lambda a, b: a / b)
    v = exercises.check_step_scale(lambda a, b: b / a)
    assert not v and "upside down" in v.message
    assert exercises.check_mixed_delta(lambda ds, cs: sum(c * d for c, d in zip(cs, ds)))
    v = exercises.check_mixed_delta(lambda ds, cs: sum(ds))
    assert not v and "coefficient" in v.message


def test_latent_exercises_of_notebook_07():
    # z = (E(x) − shift) · scale, and the CLIP loss sees D(P_t) with P_t = (z_t − sqrt(1 − ā)·ε) / sqrt(ā)
    assert exercises.check_latent_scaling(lambda raw, scale, shift: (raw - shift) * scale)
    v = exercises.check_latent_scaling(lambda raw, scale, shift: raw * scale - shift)
    assert not v and "subtract the shift" in v.message
    assert not exercises.check_latent_scaling(lambda raw, scale, shift: raw / scale + shift)
    assert exercises.check_decoded_P_t(lambda z, e, a, decode: decode((z - (1 - a) ** 0.5 * e) / a ** 0.5))
    v = exercises.check_decoded_P_t(lambda z, e, a, decode: decode(z))
    assert not v and "decode P_t" in v.message
    assert not exercises.check_decoded_P_t(lambda z, e, a, decode: (z - (1 - a) ** 0.5 * e) / a ** 0.5)
