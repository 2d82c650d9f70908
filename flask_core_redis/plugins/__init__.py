"""The built-in plugins: presence, otp and cache. Each depends on the plugin
API only, and each is found through the ``flask_core_redis`` entry-point
group (declared in pyproject.toml) and loaded like any third-party plugin."""
