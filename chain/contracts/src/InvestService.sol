// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IIssuer} from "./Issuer.sol";
import {ICampaign} from "./Campaign.sol";

/// @title InvestService
/// @notice Invests, on behalf of investors, the stablecoin they approved to campaigns. Every
///         record is handled on its own: one InvestFor event per record, and one failing record
///         never reverts the batch. A campaign must trust this service (Campaign.setInvestService)
///         and be registered here by the owner (setCampaignStatus).
/// @dev investFor only ever moves an investor's funds to a campaign the investor approved,
///      within that approval, and credits the investor; still, only the platform's executor may
///      call it (the owner, plus callers it allows), so an allowance left over after a task was
///      cancelled cannot be spent by anyone else.
///
///      Only campaigns the owner registered are ever called: for any other address getStatus
///      answers "not ready" and investFor emits InvestFor(success = false, "campaign not
///      registered") without calling it. A campaign reports its own stablecoin and issuer, so an
///      unregistered contract could claim anything (a "ready" investor with any balance); the
///      registry is what the platform trusts, not what a contract says about itself. The owner
///      should be an operator key distinct from the executor's, so a compromised executor can
///      neither register campaigns nor invest in unregistered ones.
contract InvestService is Ownable {
    /// @dev Gas one read of a registered campaign, its stablecoin or its issuer may use, and the
    ///      most return data copied from it: a misbehaving contract cannot make getStatus or
    ///      investFor expensive by burning gas or answering megabytes.
    uint256 private constant READ_GAS = 100_000;

    mapping(address => bool) private allowedCallers;
    mapping(address => bool) private registeredCampaigns;

    struct InvestmentRecord {
        address investor;
        address campaign;
        uint256 amount;
    }

    struct InvestmentRecordStatus {
        address investor;
        address campaign;
        /// min(requested amount, stablecoin balance, allowance to the campaign)
        uint256 amount;
        /// approved on the campaign's issuer and amount > 0
        bool readyToInvest;
    }

    event InvestFor(
        address indexed investor,
        address indexed campaign,
        uint256 requested,
        uint256 invested,
        bool success,
        string reason
    );
    event UpdateCallerStatus(address indexed caller, bool allowed);
    event CampaignStatus(address indexed campaign, bool registered);

    constructor() Ownable(msg.sender) {}

    modifier onlyAllowedCaller() {
        require(isAllowedCaller(msg.sender), "InvestService: caller is not allowed");
        _;
    }

    /// @notice The owner is always allowed; other callers when enabled by the owner.
    function isAllowedCaller(address caller) public view returns (bool) {
        return caller == owner() || allowedCallers[caller];
    }

    function updateCallerStatus(address caller, bool allowed) external onlyOwner {
        require(caller != address(0), "InvestService: invalid caller address");
        allowedCallers[caller] = allowed;
        emit UpdateCallerStatus(caller, allowed);
    }

    /// @notice Registers (or unregisters) a campaign the platform may invest in.
    function setCampaignStatus(address campaign, bool registered) external onlyOwner {
        require(campaign != address(0), "InvestService: invalid campaign address");
        registeredCampaigns[campaign] = registered;
        emit CampaignStatus(campaign, registered);
    }

    function isRegisteredCampaign(address campaign) external view returns (bool) {
        return registeredCampaigns[campaign];
    }

    function getStatus(InvestmentRecord[] calldata investments)
        external
        view
        returns (InvestmentRecordStatus[] memory)
    {
        InvestmentRecordStatus[] memory response = new InvestmentRecordStatus[](investments.length);
        for (uint256 i = 0; i < investments.length; i++) {
            InvestmentRecord calldata record = investments[i];
            (uint256 amount, bool ready,) = _evaluate(record);
            response[i] = InvestmentRecordStatus(record.investor, record.campaign, amount, ready);
        }
        return response;
    }

    /// @notice Why each record is not ready to invest now (an empty string when it is): the
    ///         reason `investFor` would report, without the call.
    function getStatusReasons(InvestmentRecord[] calldata investments)
        external
        view
        returns (string[] memory)
    {
        string[] memory reasons = new string[](investments.length);
        for (uint256 i = 0; i < investments.length; i++) {
            (,, reasons[i]) = _evaluate(investments[i]);
        }
        return reasons;
    }

    function investFor(InvestmentRecord[] calldata investments) external onlyAllowedCaller {
        for (uint256 i = 0; i < investments.length; i++) {
            InvestmentRecord calldata record = investments[i];
            (uint256 amount, bool ready, string memory reason) = _evaluate(record);
            if (!ready) {
                emit InvestFor(record.investor, record.campaign, record.amount, 0, false, reason);
                continue;
            }
            try ICampaign(record.campaign).investForBeneficiary(record.investor, record.investor, amount) {
                emit InvestFor(record.investor, record.campaign, record.amount, amount, true, "");
            } catch Error(string memory revertReason) {
                emit InvestFor(record.investor, record.campaign, record.amount, 0, false, revertReason);
            } catch Panic(uint256) {
                emit InvestFor(record.investor, record.campaign, record.amount, 0, false, "campaign panicked");
            } catch (bytes memory data) {
                emit InvestFor(record.investor, record.campaign, record.amount, 0, false, _describe(data));
            }
        }
    }

    /// @return amount what can be invested now: min(requested, balance, allowance)
    /// @return ready whether the investor is approved on the issuer and amount > 0
    /// @return reason why it is not ready (empty when ready)
    function _evaluate(InvestmentRecord calldata record)
        private
        view
        returns (uint256 amount, bool ready, string memory reason)
    {
        // Before anything is read from it: an unregistered campaign is never called.
        if (!registeredCampaigns[record.campaign]) return (0, false, "campaign not registered");
        if (record.campaign.code.length == 0) return (0, false, "campaign is not a contract");

        (bool ok, address token) = _readAddress(record.campaign, abi.encodeCall(ICampaign.stablecoin, ()));
        if (!ok || token.code.length == 0) return (0, false, "campaign stablecoin unavailable");
        (bool ok2, address issuer) = _readAddress(record.campaign, abi.encodeCall(ICampaign.issuer, ()));
        if (!ok2 || issuer.code.length == 0) return (0, false, "campaign issuer unavailable");

        (bool ok3, uint256 balance) = _readUint(token, abi.encodeCall(IERC20.balanceOf, (record.investor)));
        (bool ok4, uint256 allowance) =
            _readUint(token, abi.encodeCall(IERC20.allowance, (record.investor, record.campaign)));
        if (!ok3 || !ok4) return (0, false, "stablecoin query failed");

        amount = record.amount;
        if (balance < amount) amount = balance;
        if (allowance < amount) amount = allowance;

        (bool ok5, uint256 approved) = _readUint(issuer, abi.encodeCall(IIssuer.isWalletApproved, (record.investor)));
        if (!ok5 || approved > 1) return (amount, false, "issuer query failed");
        if (approved == 0) return (amount, false, "wallet not approved");
        if (amount == 0) {
            if (record.amount == 0) return (0, false, "requested amount is zero");
            if (balance == 0) return (0, false, "insufficient balance");
            return (0, false, "insufficient allowance");
        }
        return (amount, true, "");
    }

    /// @dev A staticcall under READ_GAS that copies at most the first 32 bytes of the answer
    ///      (into the scratch space), however much the target returns.
    function _readUint(address target, bytes memory data) private view returns (bool ok, uint256 value) {
        assembly ("memory-safe") {
            ok := staticcall(READ_GAS, target, add(data, 0x20), mload(data), 0, 0)
            if lt(returndatasize(), 0x20) { ok := 0 }
            if ok {
                returndatacopy(0, 0, 0x20)
                value := mload(0)
            }
        }
    }

    function _readAddress(address target, bytes memory data) private view returns (bool, address) {
        (bool success, uint256 value) = _readUint(target, data);
        if (!success || value > type(uint160).max) return (false, address(0));
        // casting to 'uint160' is safe because value <= type(uint160).max was checked above
        // forge-lint: disable-next-line(unsafe-typecast)
        return (true, address(uint160(value)));
    }

    /// @dev "reverted" for empty revert data, otherwise "reverted with error 0x<selector>".
    function _describe(bytes memory data) private pure returns (string memory) {
        if (data.length < 4) return "reverted";
        bytes memory hexChars = "0123456789abcdef";
        bytes memory out = new bytes(10);
        out[0] = "0";
        out[1] = "x";
        for (uint256 i = 0; i < 4; i++) {
            uint8 b = uint8(data[i]);
            out[2 + 2 * i] = hexChars[b >> 4];
            out[3 + 2 * i] = hexChars[b & 0x0f];
        }
        return string.concat("reverted with error ", string(out));
    }
}
