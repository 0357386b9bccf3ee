"""genai-workstation: rebuild and verify GPU workstations for generative-AI Docker stacks."""
