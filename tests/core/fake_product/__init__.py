"""A product that exists only in the tests: it plugs into the platform through the product contract alone
(``core.products``), with no core edit. Installed only by ``tests.core.fake_product.settings``."""
