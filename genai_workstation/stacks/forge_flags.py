"""The command-line flags of Forge at the commit the image pins (render.FORGE_DEFAULTS["ref"]).

Forge's parser is modules/cmd_args.py plus the `preload.py` of its built-in extensions
(modules/shared_cmd_options.py), e.g. --lora-dir comes from extensions-builtin/sd_forge_lora.
An unknown flag makes Forge exit at start (argparse), so the render refuses it first.
tests/test_forge_flags.py checks this list against the real parser of the pinned checkout, and
every command line the render emits against that parser.
"""

FORGE_FLAGS_REF = "1b44ae22e3996b8af048f268bd076702b296b469"
FORGE_FLAGS = frozenset("""
    --add-stop-route --administrator --all-in-fp16 --all-in-fp32 --allow-code
    --always-batch-cond-uncond --always-cpu --always-gpu --always-high-vram --always-low-vram
    --always-no-vram --always-normal-vram --always-offload-from-vram --api --api-auth --api-log
    --api-server-stop --attention-pytorch --attention-quad --attention-split --autolaunch
    --bsrgan-models-path --ckpt --ckpt-dir --clip-in-fp16 --clip-in-fp32 --clip-in-fp8-e4m3fn
    --clip-in-fp8-e5m2 --clip-models-path --codeformer-models-path --config --controlnet-dir
    --controlnet-loglevel --controlnet-preprocessor-models-dir --controlnet-tracemalloc
    --cors-allow-origins --cors-allow-origins-regex --cuda-malloc --cuda-stream --dat-models-path
    --data-dir --deepdanbooru --device-id --directml --disable-all-extensions
    --disable-attention-upcast --disable-console-progressbars --disable-extra-extensions
    --disable-gpu-warning --disable-ipex-hijack --disable-model-loading-ram-optimization
    --disable-nan-check --disable-opt-split-attention --disable-safe-unpickle --disable-tls-verify
    --disable-xformers --do-not-download-clip --dump-sysinfo --embeddings-dir
    --enable-console-prompts --enable-insecure-extension-access --esrgan-models-path
    --filenames-max-length --force-enable-xformers --force-upcast-attention --forge-ref-a1111-home
    --freeze-settings --freeze-settings-in-sections --freeze-specific-settings --gfpgan-dir
    --gfpgan-model --gfpgan-models-path --gpu-device-id --gradio-allowed-path --gradio-auth
    --gradio-auth-path --gradio-debug --gradio-img2img-tool --gradio-inpaint-tool --gradio-queue
    --help --hide-ui-dir-config --hypernetwork-dir --listen --localizations-dir --log-startup
    --loglevel --lora-dir --lowram --lowvram --lyco-dir-backcompat --max-batch-count --medvram
    --medvram-sdxl --models-dir --ngrok --ngrok-options --ngrok-region --no-download-sd-model
    --no-gradio-queue --no-half --no-half-vae --no-hashing --no-progressbar-hiding
    --no-prompt-history --nowebui --opt-channelslast --opt-sdp-attention
    --opt-sdp-no-mem-attention --opt-split-attention --opt-split-attention-invokeai
    --opt-split-attention-v1 --opt-sub-quad-attention --pin-shared-memory --port --precision
    --pytorch-deterministic --realesrgan-models-path --reinstall-torch --reinstall-xformers
    --scunet-models-path --server-name --share --show-negative-prompt --skip-install
    --skip-load-model-at-start --skip-prepare-environment --skip-python-version-check
    --skip-torch-cuda-test --skip-version-check --styles-file --sub-quad-chunk-threshold
    --sub-quad-kv-chunk-size --sub-quad-q-chunk-size --subpath --swinir-models-path --test-server
    --text-encoder-dir --textual-inversion-templates-dir --theme --timeout-keep-alive
    --tls-certfile --tls-keyfile --ui-config-file --ui-debug-mode --ui-settings-file
    --unet-in-bf16 --unet-in-fp16 --unet-in-fp8-e4m3fn --unet-in-fp8-e5m2
    --unix-filenames-sanitization --unload-gfpgan --upcast-sampling --update-all-extensions
    --update-check --use-cpu --use-ipex --use-textbox-seed --vae-dir --vae-in-bf16 --vae-in-cpu
    --vae-in-fp16 --vae-in-fp32 --vae-path --xformers --xformers-flash-attention
""".split())  # 166 flags

# Flags whose effect needs a package the image does not have: refused, with the reason.
FORGE_REFUSED_FLAGS = {
    flag: "the image has no xformers: Forge installs it only in its install step, which "
          "containers skip, and xformers wheels are CUDA builds that pin one torch release; "
          "Forge uses PyTorch's own attention (SDPA) without it"
    for flag in ("--xformers", "--force-enable-xformers", "--xformers-flash-attention",
                 "--reinstall-xformers")
}
