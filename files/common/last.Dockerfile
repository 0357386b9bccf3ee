# Last, so that a new hash does not invalidate the layers above. The inventory's image.extend
# steps and local custom nodes go just before it (genai_workstation/stacks/image_ext.py); the
# app and source labels come with `docker build --label` (stacks/builtin.py).
ARG BUILD_HASH=unset
LABEL genai.build-hash="${BUILD_HASH}"
