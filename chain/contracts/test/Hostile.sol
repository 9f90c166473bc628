// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

// Hostile contracts for tests only: what an attacker could deploy and name to the platform as a
// campaign or an issuer, hoping to make its signer spend gas. They are compiled with the
// artifacts (artifacts/hostile/) so the Rust integration tests can deploy them; nothing in the
// platform deploys them.

/// @notice Answers "ready" to everything the InvestService reads: it is its own stablecoin and
///         issuer, every investor has a large balance and allowance and is approved, and
///         investing succeeds without moving anything.
contract LiarCampaign {
    function stablecoin() external view returns (address) {
        return address(this);
    }

    function issuer() external view returns (address) {
        return address(this);
    }

    function balanceOf(address) external pure returns (uint256) {
        return type(uint128).max;
    }

    function allowance(address, address) external pure returns (uint256) {
        return type(uint128).max;
    }

    function isWalletApproved(address) external pure returns (bool) {
        return true;
    }

    function investForBeneficiary(address, address, uint256) external {}
}

/// @notice An issuer that claims the platform's WalletApprover as its approver (any address can
///         say so) and accepts every approval.
contract FakeIssuer {
    address public walletApprover;

    constructor(address claimedApprover) {
        walletApprover = claimedApprover;
    }

    function isWalletApproved(address) external pure returns (bool) {
        return false;
    }

    function approveWallet(address) external {}

    function suspendWallet(address) external {}
}

/// @notice Reverts every call, with a reason.
contract RevertingContract {
    fallback() external {
        revert("hostile: always reverts");
    }
}

/// @notice Burns all the gas it is given, on every call.
contract GasBurner {
    fallback() external {
        while (true) {}
    }
}

/// @notice Answers every call with 1 MiB of data.
contract HugeReturner {
    fallback() external {
        assembly {
            return(0, 0x100000)
        }
    }
}
