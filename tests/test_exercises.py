"""The exercise checks accept the right answer and explain the typical wrong ones."""
import torch
import torch.nn.functional as F

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


def test_one_number_instead_of_a_batch_and_float32_answers():
    v = exercises.check_directional_loss(lambda a, b, d: (1 - F.cosine_similarity(
        F.normalize(a, dim=-1) - F.normalize(b, dim=-1), d[None], dim=-1)).mean())
    assert not v and "one number" in v.message and "(4,)" in v.message
    # float64 betas, a float32 answer built in a loop: right, not an error
    assert exercises.check_alpha_bar(lambda b: torch.tensor([float(torch.prod(1 - b[:i + 1])) for i in range(len(b))],
                                                            dtype=torch.float32))


def test_directional_loss_check():

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
    import numpy as np

    assert exercises.check_t_edit(lambda ts, ds, cos: np.int64(right(ts, ds, cos)))  # numpy's ints are ints
    assert exercises.check_t_edit(lambda ts, ds, cos: torch.tensor(right(ts, ds, cos)))  # so is a 0-d int tensor


def test_step_scale_and_mix_checks():
    assert exercises.check_step_scale(lambda a, b: a / b)
    v = exercises.check_step_scale(lambda a, b: b / a)
    assert not v and "upside down" in v.message
    import numpy as np

    assert exercises.check_step_scale(lambda a, b: np.float32(a) / np.float32(b))  # numpy's floats are numbers
    assert exercises.check_step_scale(lambda a, b: torch.tensor(a / b))  # so is a 0-d tensor
    v = exercises.check_step_scale(lambda a, b: a // b)  # right for (40, 20), wrong for (40, 80)
    assert not v and "(40, 80)" in v.message and "integer division" in v.message
    assert not exercises.check_step_scale(lambda a, b: True)
    assert "(40, 20)" in exercises.check_step_scale(lambda a, b: float("nan")).message  # a verdict, not a crash
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
    # decoding z_t and ε apart, then combining the images, is wrong: the decoder is not linear
    v = exercises.check_decoded_P_t(lambda z, e, a, decode: (decode(z) - (1 - a) ** 0.5 * decode(e)) / a ** 0.5)
    assert not v and "not linear" in v.message


def test_every_notebook_exercise_ships_a_stub_and_a_solution_that_passes_its_check():
    """Each exercise cell returns None until the student writes it; the collapsed solution below it passes the check."""
    import re
    from pathlib import Path

    solved = 0
    for path in sorted(Path(__file__).parents[1].glob("notebooks/0*.py")):
        text = path.read_text()
        checks = dict((fn, check) for check, fn in re.findall(r"^(check_\w+)\((my_\w+)\)$", text, re.M))
        blocks = re.findall(r"^# <details><summary>A solution.*?^# ```python\n(.*?)^# ```$", text, re.M | re.S)
        assert len(blocks) == len(checks), path.name  # one solution per checked exercise
        for block in blocks:
            namespace = {"torch": torch, "F": F}
            exec("\n".join(line[2:] for line in block.splitlines()), namespace)  # the block without its "# "
            fn = next(name for name in namespace if name.startswith("my_"))
            verdict = getattr(exercises, checks[fn])(namespace[fn])
            assert verdict, (path.name, fn, verdict)
            stub = re.search(rf"^def {fn}\(.*?\n\n", text, re.M | re.S).group(0)
            assert "return None" in stub and "YOUR CODE HERE" in stub, (path.name, fn)
            solved += 1
    assert solved == 11


def test_numpy_answers_pass_and_crashes_get_an_answer_with_the_usual_cause():
    import numpy as np

    assert exercises.check_alpha_bar(lambda b: np.cumprod(1 - b.numpy()))
    v = exercises.check_q_sample(lambda x0, t, e, ab: ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * e)  # no reshape
    assert not v and "RuntimeError" in v.message and ".view(-1, 1, 1, 1)" in v.message
    for check, answer in ((exercises.check_predict_x0, lambda x, e, a: (x - torch.sqrt(1 - a) * e) / torch.sqrt(a)),
                          (exercises.check_direction_to_xt, lambda e, ap, s: torch.sqrt(1 - ap - s ** 2) * e),
                          (exercises.check_asymmetric_step, lambda x, e, ee, a, ap: torch.sqrt(ap) * x)):
        v = check(answer)
        assert not v and "Python float" in v.message and "** 0.5" in v.message
    v = exercises.check_mixed_delta(lambda d, c: d[3])  # any other crash: named, without a made-up cause
    assert not v and v.message.startswith("your function raised IndexError")
    v = exercises.check_predict_x0(lambda x, e: x)  # a TypeError of another kind: no word about floats
    assert not v and "TypeError" in v.message and "Python float" not in v.message
    half = exercises.check_q_sample(lambda x0, t, e, ab: ab[t].view(-1, 1, 1, 1).sqrt() * x0
                                    + (1 - ab[t].view(-1, 1, 1, 1)) * e)
    assert not half and "noise weight" in half.message
