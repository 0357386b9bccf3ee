# Forge's installer at image build time (files/forge/Dockerfile). Forge reads each of its
# settings with os.environ.get(NAME, default): a build argument left empty would be "", not
# Forge's default, so every empty variable is unset first.
set -eu
for name in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=$/\1/p'); do
  unset "${name}"
done
exec python launch.py --skip-torch-cuda-test --skip-python-version-check --exit
