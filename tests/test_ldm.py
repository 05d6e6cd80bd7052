"""Latent diffusion: the codec, toy LDM training, decoded trajectories, Asyrp through the decoder, CompVis loading."""
import io
import json
import math
import time

import pytest
import torch
from diffusers import DDIMScheduler

from asyrp_edu import toy
from asyrp_edu.autoencoder import TOY_VAE_CONFIG, LatentCodec, build_autoencoder, train_autoencoder
from asyrp_edu.ddim import Schedule, ddim_generate, unet_noise_model
from asyrp_edu.editing import Intervals
from asyrp_edu.ldm import TOY_LATENT_UNET_CONFIG, frames_to_gif, train_toy_ldm, trajectory_frames
from asyrp_edu.models import build_unet
from asyrp_edu.train_asyrp import EditorConfig, train_editor

TINY_VAE = dict(TOY_VAE_CONFIG, block_out_channels=(8, 16), norm_num_groups=4)
TINY_LATENT_UNET = dict(TOY_LATENT_UNET_CONFIG, block_out_channels=(16, 32))


@pytest.fixture
def tiny_ldm():
    torch.manual_seed(0)
    codec = LatentCodec(build_autoencoder(TINY_VAE).eval(), scale=0.8, shift=0.1).requires_grad_(False)
    unet = build_unet(TINY_LATENT_UNET).eval().requires_grad_(False)
    return unet, Schedule.linear(), codec


def test_codec_shapes_and_scaling(tiny_ldm):
    _, _, codec = tiny_ldm
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (2, 4, 16, 16) and codec.downsampling == 2
    raw = codec.autoencoder.encode(x).latent_dist.mean
    # z = (E(x) − shift) · scale, and decode undoes the affine map before the decoder
    assert torch.allclose(z, (raw - 0.1) * 0.8, atol=1e-6)
    assert torch.allclose(codec.decode(z), codec.autoencoder.decode(raw).sample, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        codec.encode(torch.zeros(3, 32, 32))


def test_autoencoder_training_learns_and_resumes_exactly(tmp_path, monkeypatch):
    straight = train_autoencoder(tmp_path / "a", steps=6, batch_size=4, config=TINY_VAE, progress=False)
    real_sample, calls = toy.sample, []

    def interrupted(*args, **kwargs):  # the user presses stop during step 4 (after the checkpoint of step 3)
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_sample(*args, **kwargs)

    monkeypatch.setattr("asyrp_edu.autoencoder.toy.sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(tmp_path / "b", steps=6, batch_size=4, config=TINY_VAE, progress=False, checkpoint_every=3)
    monkeypatch.setattr("asyrp_edu.autoencoder.toy.sample", real_sample)
    resumed = train_autoencoder(tmp_path / "b", steps=6, batch_size=4, config=TINY_VAE, progress=False)
    assert resumed.losses == pytest.approx(straight.losses[3:], rel=1e-4)
    assert straight.losses[-1] < straight.losses[0]
    from safetensors import safe_open

    with safe_open(str(straight.weights), "pt") as f:
        meta = f.metadata()
    assert float(meta["scale"]) > 0 and "vae_config" in meta
    assert not list(tmp_path.rglob("*.tmp"))


def test_ddpm_and_autoencoder_training_refuse_to_resume_another_network(tmp_path):
    """A folder left by a run of another network is refused; other changed settings are announced."""
    from asyrp_edu.models import TOY_UNET_CONFIG
    from asyrp_edu.train_ddpm import train_ddpm

    small = dict(TOY_UNET_CONFIG, block_out_channels=(32, 32, 32))
    options = dict(batch_size=2, config=small, progress=False, bf16=False)
    train_ddpm(tmp_path / "ddpm", steps=2, **options)
    with pytest.raises(ValueError, match=r"config: .*--no-resume"):  # another U-Net: not a raw load_state_dict error
        train_ddpm(tmp_path / "ddpm", steps=3, **dict(options, config=dict(small, layers_per_block=2)))
    # training on with another learning rate is a choice (the shipped DDPM was made so): announced, not refused
    with pytest.warns(UserWarning, match=r"changed settings: lr 0.0004 -> 0.0008"):
        assert train_ddpm(tmp_path / "ddpm", steps=3, lr=8e-4, **options).step == 3
    train_autoencoder(tmp_path / "vae", steps=2, batch_size=2, config=TINY_VAE, progress=False)
    with pytest.raises(ValueError, match=r"config: "):
        train_autoencoder(tmp_path / "vae", steps=3, batch_size=2, config=dict(TINY_VAE, latent_channels=3),
                          progress=False)
    # a state file cut short (e.g. copied by hand while it was written) names the fix, not a zip-reader error
    for folder in ("ddpm", "vae"):
        (state := next((tmp_path / folder).glob("*.pt"))).write_bytes(state.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"not a readable training state .*--no-resume"):
        train_ddpm(tmp_path / "ddpm", steps=3, **options)
    with pytest.raises(ValueError, match=r"not a readable training state .*--no-resume"):
        train_autoencoder(tmp_path / "vae", steps=3, batch_size=2, config=TINY_VAE, progress=False)


def test_latent_ddpm_trains_on_latents(tmp_path, tiny_ldm):
    _, _, codec = tiny_ldm
    result = train_toy_ldm(tmp_path, codec, steps=3, batch_size=4, config=TINY_LATENT_UNET, progress=False,
                           bf16=False, checkpoint_every=3)
    assert result.weights.name == "toy_ldm.safetensors" and result.weights.is_file()
    assert len(result.losses) == 3 and all(math.isfinite(v) for v in result.losses)
    # the U-Net did learn: its weights left their seeded initialisation (train_ddpm builds it after manual_seed)
    from asyrp_edu.models import build_unet
    from asyrp_edu.train_ddpm import STATE_FILE

    torch.manual_seed(0)
    initial = build_unet(TINY_LATENT_UNET).state_dict()
    trained = torch.load(tmp_path / STATE_FILE, weights_only=True)["model"]
    assert trained.keys() == initial.keys()
    # (3 steps of the 200-step warm-up move Adam's weights by about 3·lr·(3/200) ≈ 1e-5; not training: exactly 0)
    moved = max(float((trained[k] - initial[k]).abs().max()) for k in initial)
    assert 2e-6 < moved < 1e-3, moved  # (< 1e-3: compared with the same initialisation, not another draw)


def test_trajectory_frames_are_decoded_images_and_make_a_gif(tmp_path, tiny_ldm):
    from PIL import Image

    unet, schedule, codec = tiny_ldm
    z_T = torch.randn(2, 4, 16, 16)
    frames = trajectory_frames(unet, schedule, z_T, num_steps=5, codec=codec)
    assert len(frames) == 6 and frames[0].t == 800 and frames[-1].t == -1
    assert all(f.x_t.shape == (2, 3, 32, 32) and f.P_t.shape == (2, 3, 32, 32) for f in frames)
    # the last frame is the decoded result of the same reverse process
    result = ddim_generate(unet_noise_model(unet), z_T, schedule, 5, clip_x0=False, progress=False)
    assert torch.allclose(frames[-1].x_t, codec.decode(result).clamp(-1, 1), atol=1e-5)
    # frame k shows step k's input z_t and its predicted latent, both decoded (stepped here by diffusers)
    reference = DDIMScheduler(beta_schedule="linear", clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    reference.set_timesteps(5)
    z = z_T
    with torch.no_grad():
        for frame, t in zip(frames, reference.timesteps):
            out = reference.step(unet(z, t).sample, t, z)
            assert frame.t == int(t)
            assert torch.allclose(frame.x_t, codec.decode(z).clamp(-1, 1), atol=1e-4), int(t)
            assert torch.allclose(frame.P_t, codec.decode(out.pred_original_sample).clamp(-1, 1), atol=1e-4), int(t)
            z = out.prev_sample
    data = frames_to_gif(frames, tmp_path / "movie.gif", n_images=2)
    gif = Image.open(io.BytesIO(data))
    assert gif.format == "GIF" and gif.n_frames == 6
    assert (tmp_path / "movie.gif").read_bytes() == data
    with pytest.raises(ValueError, match="trajectory_frames"):
        frames_to_gif([])


class RecordingClip:
    """Mean-colour 'CLIP' that remembers the shapes of the images it is shown."""

    def __init__(self):
        self.shapes = []

    def encode_text(self, prompts):
        table = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0]}
        return torch.tensor([table[p] for p in prompts])

    def encode_image(self, images):
        self.shapes.append(tuple(images.shape))
        return torch.nn.functional.normalize(images.mean(dim=(2, 3)) + 1.5, dim=-1)


def test_asyrp_on_the_latent_unet_trains_through_the_decoder(tmp_path, tiny_ldm):
    unet, schedule, codec = tiny_ldm
    clip = RecordingClip()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    config = EditorConfig(source="red", target="green", t_edit=500, num_steps=4, batch_size=2, lr=1e-2, epochs=2)
    result = train_editor(unet, schedule, clip, images, config, tmp_path, progress=False, codec=codec)
    # the CLIP loss saw decoded images (3 channels at image size), never the 4-channel 16² latents
    assert clip.shapes and all(s[1:] == (3, 32, 32) for s in clip.shapes)
    # conv2 starts at zero: it only moves if the loss gradient reached f_t through the decoder and the U-Net
    assert result.editor.conv2.weight.abs().sum() > 0
    assert result.editor.conv1.weight.shape[0] == 32  # h of the latent U-Net: (B, 32, 8, 8)


def _saved_tiny_ldm_pipeline(folder):
    """A random LDMPipeline in the CompVis CelebA-HQ layout (VQModel, 3 latent channels), saved to folder."""
    from diffusers import DDIMScheduler, LDMPipeline, VQModel

    torch.manual_seed(0)
    vq = VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                 latent_channels=3, num_vq_embeddings=32, vq_embed_dim=3, norm_num_groups=4, sample_size=16)
    unet = build_unet(dict(TINY_LATENT_UNET, in_channels=3, out_channels=3, sample_size=8))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195, clip_sample=False)
    pipe = LDMPipeline(vqvae=vq, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(folder)
    return pipe


def test_the_compvis_celeba_ldm_decodes_its_latents_unscaled(tmp_path, monkeypatch):
    """CompVis trained ldm-celebahq-256 on unscaled VQ latents; diffusers' VQModel default (0.18215) would be wrong."""
    from asyrp_edu import registry

    pipe = _saved_tiny_ldm_pipeline(tmp_path / "ldm")
    assert pipe.vqvae.config.scaling_factor == pytest.approx(0.18215)  # what LDMPipeline divides by
    entry = registry.LDMS["ldm_celebahq"]
    assert entry.latent_scale == 1.0
    # the named model, read from a local stand-in for the hub repository
    monkeypatch.setitem(registry.LDMS, "ldm_celebahq", registry.PretrainedDDPM(
        str(tmp_path / "ldm"), entry.revision, entry.lpips_dataset, entry.editor_suffix, entry.latent_scale))
    monkeypatch.setattr(registry, "_cached", lambda *args, **kwargs: True)
    monkeypatch.setattr(registry, "hub_reachable", lambda *args, **kwargs: False)
    ldm = registry.load_ldm("ldm_celebahq")
    z = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert ldm.codec.scale == 1.0 and torch.allclose(ldm.codec.decode(z), pipe.vqvae.decode(z).sample)
    # a folder follows its vqvae config, as LDMPipeline does, unless told otherwise
    assert registry.load_ldm(tmp_path / "ldm").codec.scale == pytest.approx(0.18215)
    assert registry.load_ldm(tmp_path / "ldm", latent_scale=1.0).codec.scale == 1.0
    with pytest.raises(ValueError, match="latent_scale"):
        registry.load_ldm(tmp_path / "ldm", latent_scale=0.0)
    # the hub's own files predate scaling_factor: a folder of them must not get VQModel's 0.18215
    config = tmp_path / "ldm" / "vqvae" / "config.json"
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "scaling_factor"}))
    assert registry.load_ldm(tmp_path / "ldm").codec.scale == 1.0


def test_load_ldm_from_a_pipeline_folder_matches_diffusers_ldm_pipeline(tmp_path):
    """Our schedule, DDIM and VQ codec on a saved same-layout LDM reproduce diffusers' own LDMPipeline."""
    from asyrp_edu.registry import load_ldm

    pipe = _saved_tiny_ldm_pipeline(tmp_path / "ldm")
    ldm = load_ldm(tmp_path / "ldm")
    assert ldm.image_size == 16 and ldm.codec.is_vq
    from asyrp_edu.registry import load_ddpm

    with pytest.raises(ValueError, match=r"latent diffusion model .*load_ldm"):  # not a pixel DDPM of latents
        load_ddpm(tmp_path / "ldm")
    theirs = pipe(batch_size=2, num_inference_steps=10, eta=0.0, generator=torch.Generator().manual_seed(3),
                  output_type="np").images  # (2, 16, 16, 3) in [0, 1]
    z_T = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        z0 = ddim_generate(unet_noise_model(ldm.unet), z_T, ldm.schedule, 10, clip_x0=False, progress=False)
        ours = ((ldm.codec.decode(z0) / 2 + 0.5).clamp(0, 1)).permute(0, 2, 3, 1).numpy()
    assert abs(ours - theirs).max() < 1e-4


def test_ldm_by_name_fails_fast_offline_and_folders_are_checked(tmp_path, monkeypatch):
    from asyrp_edu.registry import WeightsUnavailable, load_ldm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailable, match="toy world"):
        load_ldm("ldm_celebahq")
    assert time.perf_counter() - start < 5
    with pytest.raises(KeyError, match="ldm_celebahq"):
        load_ldm("ldm_bedroom")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "unet").mkdir()
    with pytest.raises(FileNotFoundError, match="vqvae"):
        load_ldm(tmp_path / "half")


def test_edited_latent_generation_differs_from_plain(tiny_ldm):
    unet, schedule, codec = tiny_ldm
    z_T = torch.randn(1, 4, 16, 16)
    dh = torch.randn(1, 32, 8, 8)
    edited = trajectory_frames(unet, schedule, z_T, 5, codec, dh, Intervals(500))
    plain = trajectory_frames(unet, schedule, z_T, 5, codec)
    assert [f.kind for f in edited[:3]] == ["edit", "edit", "ddim"]
    assert not torch.allclose(edited[-1].x_t, plain[-1].x_t)
    everywhere = trajectory_frames(unet, schedule, z_T, 5, codec, dh)  # a Δh without intervals edits every step
    assert [f.kind for f in everywhere] == ["edit"] * 5 + ["end"] and [f.kind for f in plain[:5]] == ["ddim"] * 5


def test_compvis_ldm_config_has_h_at_8x8_and_takes_an_f_t():
    """CompVis/ldm-celebahq-256's configs, built on the meta device (no memory): h and the f_t that fits it."""
    from asyrp_edu.autoencoder import LDM_CELEBA_HQ_VQ_CONFIG
    from asyrp_edu.hspace import h_shape, temb_dim
    from asyrp_edu.ldm import LDM_CELEBA_HQ_UNET_CONFIG
    from asyrp_edu.train_asyrp import new_editor

    with torch.device("meta"):
        unet = build_unet(LDM_CELEBA_HQ_UNET_CONFIG)
        codec = LatentCodec(build_autoencoder(LDM_CELEBA_HQ_VQ_CONFIG))
        editor = new_editor(unet)
    assert h_shape(unet) == (896, 8, 8) and temb_dim(unet) == 4 * 224
    assert codec.is_vq and codec.downsampling == 4  # 256² images -> 64² latents, the U-Net's sample_size
    assert editor.conv1.weight.shape[:2] == (896, 896)


def test_a_pixel_ddpm_and_a_latent_one_are_not_taken_for_each_other():
    from asyrp_edu.ldm import load_toy_ldm
    from asyrp_edu.models import TOY_DDPM_FILE, WEIGHTS_DIR, load_toy_ddpm

    with pytest.raises(ValueError, match="latent U-Net .*--world toy-ldm"):
        load_toy_ddpm(WEIGHTS_DIR / "toy_ldm.safetensors")
    with pytest.raises(ValueError, match="3 input channels, but the autoencoder's latents have 4"):
        load_toy_ldm(WEIGHTS_DIR / TOY_DDPM_FILE)


def test_the_codec_refuses_images_it_would_encode_to_nonsense():
    from asyrp_edu.autoencoder import load_toy_autoencoder

    codec = load_toy_autoencoder()
    faces = toy.sample(2, seed=0)[0]
    with pytest.raises(ValueError, match=r"x / 127.5 - 1"):  # 0 … 255 pixels
        codec.encode((faces + 1) * 127.5)
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(faces * torch.nan)
    assert codec.encode(faces.double()).dtype == torch.float32  # in the autoencoder's own dtype
